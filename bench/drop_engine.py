"""The drop engine's figures, each beside a baseline measured in the same run, on PostgreSQL with
fsync on and the store as `sneakers23 serve` runs it:

1. pairs committed per second on one hot size, through the inventory API (a stampede of API
   buyers), against the single-row ceiling: a tight loop of conditional decrements on one row, the
   best of 1 and 16 connections;
2. POST purchase refused `sold_out` and refused `limit_reached`, via HTTP, against GET /healthz
   (wrk, same connections, back to back);
3. a stampede via HTTP, 10,000 buyers for 500 pairs of one size: attempts per second against
   GET /healthz; orders; invariants; commits per pair sold (the sales actors' count, and
   PostgreSQL's own);
4. the load generator's own ceiling: the same stampede against a trivial endpoint (bench/bare_shop.py).

    .venv/bin/python -m bench.drop_engine [--seconds 10] [--connections 50] [--buyers 10000] [--pairs 500]
    .venv/bin/python -m bench.drop_engine --phases api,refusals --rounds 3   # phases 1 and 2, three times
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import psycopg
from sqlalchemy import make_url

from bench.servers import BIN, Process, start_store, wait_http
from harness.ports import free_port
from sneakers23.inventory import Inventory
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in
from sneakers23.settings import Settings
from harness import postgres, shop

HOT = 3  # product 1, size 7
CEILING_ITEM = 7  # the single-row ceiling's row: not sold by anything else


def single_row_ceiling(url: str, connections: int, seconds: float) -> float:
    """Conditional decrements of one row per second, each its own transaction (autocommit)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = [0] * connections
    stop = time.monotonic() + seconds

    def decrement(slot: int) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            while time.monotonic() < stop:
                connection.execute("UPDATE item_availabilities SET available_count = available_count - 1, "
                                   "version = version + 1 WHERE item_id = %s AND available_count > 0", (CEILING_ITEM,))
                done[slot] += 1

    threads = [threading.Thread(target=decrement, args=(slot,)) for slot in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict:
    if shutil.which("wrk") is None:  # (the HTTP load generator every benchmark here is checked against)
        raise SystemExit("bench: wrk is not installed (Debian: apt-get install wrk)")
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    answers = int(re.search(r"(\d+) requests in", out).group(1))
    not_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)],
            "answers": answers, "not_2xx": int(not_ok.group(1)) if not_ok else 0, "output": out}


def post_as(shopper: tuple[str, str]) -> str:
    cookie, token = shopper
    return (f'wrk.method = "POST"\nwrk.headers["Cookie"] = "sneakers23_shopper={cookie}"\n'
            f'wrk.headers["{FORM_TOKEN_HEADER}"] = "{token}"\n')


def post_with_keys_as(shopper: tuple[str, str]) -> str:
    """Every request a purchase of its own (a new Idempotency-Key), as the stampede's buyers send."""
    cookie, token = shopper
    return ('wrk.method = "POST"\ncounter = 0\nrequest = function()\n  counter = counter + 1\n'
            f'  return wrk.format(nil, nil, {{["Cookie"] = "sneakers23_shopper={cookie}", ["{FORM_TOKEN_HEADER}"] = "{token}", '
            '["Idempotency-Key"] = "k" .. math.random(1, 1000000000) .. "-" .. counter}, nil)\nend\n')


def stampede(env: dict, buyers: int, concurrency: int, via: str, url: str) -> dict:
    result = subprocess.run(
        [str(BIN / "sneakers23"), "drop", "stampede", "--buyers", str(buyers), "--concurrency", str(concurrency),
         "--items", str(HOT), "--via", via, "--url", url, "--json"],
        capture_output=True, text=True, env=env)
    if result.returncode not in (0, 1):
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout)


def caches_caught_up(env: dict) -> None:
    """Until every node's cache holds what the database holds (the sales actor follows its cache)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = subprocess.run([str(BIN / "sneakers23"), "status"], capture_output=True, text=True, env=env)
        lags = [line.split()[5] for line in status.stdout.splitlines()[3:]
                if len(line.split()) > 5 and not line.startswith(("sales ", "channels "))]
        if status.returncode == 0 and lags and set(lags) == {"0"}:
            return
        time.sleep(0.2)
    raise SystemExit("the caches did not catch up with the database")


def hot_row_updates(url: str) -> int:
    """Rows of item_availabilities updated so far, by PostgreSQL's own count: a sale transaction
    updates the hot size's row once, whatever the number of pairs it sells."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for _attempt in range(50):  # the statistics collector reports with a short delay
            connection.execute("SELECT pg_stat_clear_snapshot()")
            count = connection.execute("SELECT n_tup_upd FROM pg_stat_user_tables "
                                       "WHERE relname = 'item_availabilities'").fetchone()[0]
            time.sleep(0.1)
        return count


def shopper(store: str, buys: list[int] = ()) -> tuple[str, str]:
    """A new shopper's cookie and form token (the page gives both), after it bought `buys`."""
    with httpx.Client(base_url=store, timeout=30) as client:
        page = client.get("/")
        page.raise_for_status()
        token = form_token_in(page.text)
        for item_id in buys:
            client.post(f"/api/items/{item_id}/purchase", headers={FORM_TOKEN_HEADER: token}).raise_for_status()
        return client.cookies["sneakers23_shopper"], token


PHASES = ("api", "refusals", "stampede", "ceiling")


def hot_size_through_the_api(inventory: Inventory, env: dict, url: str, ceiling: float) -> dict:
    """1. One hot size through the inventory API: as many pairs as buyers, so it never sells out."""
    api_buyers = 40_000
    shop.set_available(inventory, HOT, api_buyers)
    caches_caught_up(env)  # (the caches, and the sales actor after them, learn it by anti-entropy)
    through_api = stampede(env, api_buyers, 1600, "api", url)
    return {"pairs_per_second": round(through_api["pairs_per_second"]), "sold": through_api["sold"],
            "transactions_per_pair": through_api["transactions_per_pair"],
            "x_single_row_ceiling": round(through_api["pairs_per_second"] / ceiling, 2)}


def refusals(inventory: Inventory, url: str, seconds: int, connections: int) -> dict:
    """2. Refusals via HTTP, beside /healthz."""
    shop.set_available(inventory, 9, 0)
    while 'value="9" disabled' not in httpx.get(url + "/").text:
        time.sleep(0.2)
    at_limit = shopper(url, buys=[1, 4])  # two pairs of product 1: the limit
    for _warm_up in range(2):
        wrk(url + "/healthz", 2, connections)
    healthz = wrk(url + "/healthz", seconds, connections)
    sold_out = wrk(f"{url}/api/items/9/purchase", seconds, connections, post_as(shopper(url)))
    limit = wrk(f"{url}/api/items/5/purchase", seconds, connections, post_as(at_limit))
    keyed = wrk(f"{url}/api/items/9/purchase", seconds, connections, post_with_keys_as(at_limit))
    return {
        "healthz": healthz, "sold_out": sold_out, "limit_reached": limit,
        "sold_out_x_healthz": round(sold_out["rps"] / healthz["rps"], 2),
        "sold_out_p99_x_healthz": round(sold_out["p99_ms"] / healthz["p99_ms"], 2),
        "limit_x_healthz": round(limit["rps"] / healthz["rps"], 2),
        "limit_p99_x_healthz": round(limit["p99_ms"] / healthz["p99_ms"], 2),
        # the stampede's request (a key each: past the edge, refused by the sales actor), from wrk
        "sold_out_with_keys": keyed, "sold_out_with_keys_x_healthz": round(keyed["rps"] / healthz["rps"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--buyers", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="which phases to run, comma-separated (default all; they run in this order): "
                             + ", ".join(PHASES))
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the api and refusals phases this many times on the same store (the "
                             "first api round starts the sales actor, as a drop's first buyers do)")
    args = parser.parse_args()
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if not phases or set(phases) - set(PHASES):
        raise SystemExit(f"--phases takes some of {', '.join(PHASES)}, comma-separated")
    if args.rounds < 1:
        raise SystemExit("--rounds is 1 or more")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    server = postgres.start(postgres.find_bindir(), durable=True)
    store = bare = None
    figures: dict = {}
    try:
        settings = Settings(database_url=server.url)
        inventory = Inventory(settings)
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        inventory.release(1)
        shop.set_available(inventory, CEILING_ITEM, 10_000_000)
        ceilings = {n: single_row_ceiling(server.url, n, args.seconds) for n in (1, 16)}
        figures["single_row_ceiling"] = {f"{n} connection(s)": round(rate) for n, rate in ceilings.items()}

        port = free_port()
        store = start_store("haproxy+throughput", server.url, port)
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SNEAKERS23_DATABASE_URL": server.url, "RAY_TMPDIR": store.env["RAY_TMPDIR"]}

        def rounds(measure) -> dict | list[dict]:
            taken = [measure() for _round in range(args.rounds)]
            return taken[0] if args.rounds == 1 else taken

        if "api" in phases:
            figures["hot_size_through_the_api"] = rounds(
                lambda: hot_size_through_the_api(inventory, env, url, max(ceilings.values())))
        healthz_rps = attempts_per_second = None  # (the baselines the later phases compare with)
        if "refusals" in phases:
            figures["http"] = rounds(lambda: refusals(inventory, url, args.seconds, args.connections))
            healthz_rps = (figures["http"] if args.rounds == 1 else figures["http"][-1])["healthz"]["rps"]
        if "stampede" in phases:  # 3. The stampede via HTTP.
            healthz_rps = healthz_rps or wrk(url + "/healthz", args.seconds, args.connections)["rps"]
            shop.set_available(inventory, HOT, args.pairs)
            caches_caught_up(env)
            updates_before = hot_row_updates(server.url)
            orders_before = shop.order_count(inventory, item_id=HOT)
            via_http = stampede(env, args.buyers, args.concurrency, "http", url)
            updates = hot_row_updates(server.url) - updates_before
            attempts_per_second = via_http["attempts"] / via_http["seconds"]
            figures["stampede_via_http"] = {
                "attempts_per_second": round(attempts_per_second),
                "x_healthz": round(attempts_per_second / healthz_rps, 2),
                "orders": shop.order_count(inventory, item_id=HOT) - orders_before, "sold": via_http["sold"],
                "invariants_hold": via_http["ok"], "errors": via_http["errors"],
                "latency_p50_ms": via_http["latency_p50_ms"], "latency_p99_ms": via_http["latency_p99_ms"],
                "sold_out_refusal_p99_ms": via_http["sold_out_refusal_latency_p99_ms"],
                "sales_actor_transactions_per_pair": via_http["transactions_per_pair"],
                "stock_updates_per_pair": round(updates / max(1, via_http["sold"]), 3),
                "stock_updates_during_it": updates}

        if "ceiling" in phases:  # 4. The load generator's own ceiling: the same stampede against a trivial shop.
            bare_port = free_port()
            bare = Process([str(BIN / "uvicorn"), "bench.bare_shop:app", "--port", str(bare_port), "--log-level",
                            "warning"], {**os.environ}, "bare-shop")
            wait_http(f"http://127.0.0.1:{bare_port}/healthz")
            ceiling = stampede(env, args.buyers, args.concurrency, "http", f"http://127.0.0.1:{bare_port}")
            figures["load_generator_ceiling"] = {
                "attempts_per_second": round(ceiling["attempts"] / ceiling["seconds"]),
                "x_store_stampede": round(ceiling["attempts"] / ceiling["seconds"] / attempts_per_second, 2)
                if attempts_per_second else None,
                "trivial_endpoint_wrk": wrk(f"http://127.0.0.1:{bare_port}/api/items/3/purchase", args.seconds,
                                            args.connections, post_as(("a-shopper", "a-token")))}
        inventory.close()
    finally:
        for process in (bare, store):
            if process is not None:
                process.stop()
        server.stop()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
