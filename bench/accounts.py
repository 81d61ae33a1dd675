"""Shopper accounts' figures, each beside a baseline measured in the same run (PostgreSQL, fsync on):

1. `hash`: Argon2id's cost as chosen (inventory/accounts.py HASHER): the time of one verification,
   and the sign-ins per second the accounts service sustains (two threads signing in over and over;
   the service hashes HASHES_AT_ONCE at a time), beside bare verifications on as many threads.
2. `loop`: a burst of sign-ins must not stall a page replica's event loop: the loop's worst lag
   (a 1 ms ticker) while 200 sign-ins run through `sign_in_async`, beside the same ticker idle.
3. `stampede`: the store as `sneakers23 serve` runs it; wrk sends the stampede's request (a
   purchase with a key of its own, of a sold-out size: past the edge, refused by the sales actor)
   from SHOPPERS shoppers in turn, each request the next shopper's, once as guests (a shopper
   cookie) and once signed in (a shopper cookie and a session cookie each, a verified account
   each), alternately (each first in turn), ROUNDS times: signed-in attempts/s ÷ guests' (target
   ≥ 0.9). wrk's two threads take every other shopper, so a shopper comes back after SHOPPERS
   requests: 5,000 at ~700 a second is ~7 s. A page replica asks the database about a session at
   most once per 30 s (serve/shoppers.py SESSION_RECHECK_S; an ended session is told to every
   replica at once), so the first round asks about every session, and each one again every 30 s
   (a drop's crowd, each shopper trying again every few seconds).

    .venv/bin/python -m bench.accounts [--phases hash,loop,stampede] [--seconds 10] [--shoppers 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import statistics
import threading
import time
from datetime import datetime, timezone

from sqlalchemy import insert

from bench.drop_engine import caches_caught_up, wrk
from bench.servers import start_store
from harness import postgres, shop
from harness.ports import free_port
from sneakers23.db.models import AccountRow, AccountSessionRow
from sneakers23.domain.accounts import account_shopper_id
from sneakers23.inventory import Inventory
from sneakers23.inventory.accounts import HASHER, HASHES_AT_ONCE
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, FormTokens, SessionCookies, ShopperCookies
from sneakers23.settings import Settings

PASSWORD = "a long passphrase for the bench"
SOLD_OUT_ITEM = 9
PHASES = ("hash", "loop", "stampede")


def hashing(inventory: Inventory, seconds: float) -> dict:
    password_hash = HASHER.hash(PASSWORD)
    verifications = []
    for _ in range(20):
        started = time.perf_counter()
        HASHER.verify(password_hash, PASSWORD)
        verifications.append(time.perf_counter() - started)
    made = inventory.sign_up("bench@example.com", PASSWORD)
    inventory.verify_email(made.verify_token)

    def per_second(work, threads_count: int) -> float:
        done, stop = [0] * threads_count, time.monotonic() + seconds

        def worker(n):
            while time.monotonic() < stop:
                work()
                done[n] += 1

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / (time.monotonic() - started)

    hashes = per_second(lambda: HASHER.verify(password_hash, PASSWORD), HASHES_AT_ONCE)
    sign_ins = per_second(lambda: inventory.sign_in("bench@example.com", PASSWORD), 2)
    return {"parameters": f"Argon2id t={HASHER.time_cost} m={HASHER.memory_cost} KiB p={HASHER.parallelism}",
            "verify_ms_median": round(statistics.median(verifications) * 1000, 1),
            "hashes_at_once": HASHES_AT_ONCE, "hashes_per_second": round(hashes, 1),
            "sign_ins_per_second_2_threads": round(sign_ins, 1), "sign_ins_x_hashes": round(sign_ins / hashes, 2)}


def loop_lag(inventory: Inventory, burst: int) -> dict:
    async def worst_lag(work) -> float:
        worst, running = 0.0, True

        async def ticker():
            nonlocal worst
            while running:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - before - 0.001)

        tick = asyncio.create_task(ticker())
        await work()
        running = False
        await tick
        return worst

    async def idle():
        await asyncio.sleep(2)

    async def sign_ins():
        await asyncio.gather(*(inventory.sign_in_async("bench@example.com", PASSWORD) for _ in range(burst)))

    async def both():
        started = time.perf_counter()
        busy = await worst_lag(sign_ins)
        took = time.perf_counter() - started
        return await worst_lag(idle), busy, took

    quiet, busy, took = asyncio.run(both())
    return {"burst": burst, "burst_seconds": round(took, 2), "idle_worst_lag_ms": round(quiet * 1000, 1),
            "burst_worst_lag_ms": round(busy * 1000, 1)}


def accounts_with_sessions(inventory: Inventory, count: int) -> list[tuple[int, str]]:
    """`count` verified accounts, each with a session: (account id, session token). Written as rows
    (hashing 2,000 passwords would take a minute and measure nothing here)."""
    now = datetime.now(timezone.utc)
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    with inventory.engine.begin() as connection:
        ids = [connection.execute(insert(AccountRow.__table__).values(
            email=f"buyer{n}@example.com", email_key=f"buyer{n}@example.com", password_hash="unused",
            verified_at=now, created_at=now).returning(AccountRow.__table__.c.id)).scalar_one() for n in range(count)]
        connection.execute(insert(AccountSessionRow.__table__), [
            {"token_hash": hashlib.sha256(token.encode()).hexdigest(), "account_id": account_id, "created_at": now,
             "client": "bench", "user_agent": "wrk"} for account_id, token in zip(ids, tokens)])
    return list(zip(ids, tokens))


def keyed_purchases_as(shoppers: list[tuple[str, str]]) -> str:
    """A wrk script: each of its two threads takes every other shopper in turn (its Cookie header and
    form token) and sends a purchase with a key of its own; answers other than the 409 refusal are
    counted (a session not recognised would shop as its cookie, and get 403 for its form token)."""
    listing = ",\n".join(f'{{"{cookie}", "{token}"}}' for cookie, token in shoppers)
    return (f'wrk.method = "POST"\nshoppers = {{\n{listing}\n}}\nthreads = {{}}\n'
            "function setup(thread)\n  thread:set('id', #threads)\n  table.insert(threads, thread)\nend\n"
            "function init(args)\n  counter = id\n  others = 0\nend\n"
            "function request()\n  counter = counter + 2\n  local shopper = shoppers[(counter % #shoppers) + 1]\n"
            f'  return wrk.format(nil, nil, {{["Cookie"] = shopper[1], ["{FORM_TOKEN_HEADER}"] = shopper[2], '
            '["Idempotency-Key"] = "k" .. id .. "-" .. counter}, nil)\nend\n'
            "function response(status, headers, body)\n  if status ~= 409 then others = others + 1 end\nend\n"
            "function done(summary, latency, requests)\n  local n = 0\n"
            "  for _, thread in ipairs(threads) do n = n + thread:get('others') end\n"
            "  io.write('OTHERS ' .. n .. '\\n')\nend\n")


def others_of(run: dict) -> int:
    return int(re.search(r"OTHERS (\d+)", run["output"]).group(1))


def stampede(server_url: str, seconds: int, connections: int, count: int, rounds: int) -> dict:
    secret = secrets.token_urlsafe(32)
    inventory = Inventory(Settings(database_url=server_url))
    inventory.upgrade_schema()
    inventory.seed(random_seed=23)
    inventory.release(1)
    shop.set_available(inventory, SOLD_OUT_ITEM, 0)
    cookies, sessions, forms = ShopperCookies(secret), SessionCookies(secret), FormTokens(secret)
    guests = [(f"sneakers23_shopper={cookie}", forms.issue(shopper_id))
              for shopper_id, cookie in (cookies.new() for _ in range(count))]
    members = []
    for account_id, token in accounts_with_sessions(inventory, count):
        _anonymous, cookie = cookies.new()
        members.append((f"sneakers23_shopper={cookie}; sneakers23_session={sessions.cookie(token)}",
                        forms.issue(account_shopper_id(account_id))))
    inventory.close()
    port = free_port()
    store = start_store("haproxy+throughput", server_url, port, {"SNEAKERS23_SECRET_KEY": secret})
    try:
        caches_caught_up({**os.environ, "SNEAKERS23_DATABASE_URL": server_url, "RAY_TMPDIR": store.env["RAY_TMPDIR"]})
        url = f"http://127.0.0.1:{port}"
        for _warm_up in range(2):
            wrk(url + "/healthz", 2, connections)
        target = f"{url}/api/items/{SOLD_OUT_ITEM}/purchase"
        runs: dict[str, list[dict]] = {"guests": [], "signed_in": []}
        for round_ in range(rounds):  # (alternating, and each kind first in turn)
            for kind in (("guests", "signed_in") if round_ % 2 == 0 else ("signed_in", "guests")):
                runs[kind].append(wrk(target, seconds, connections,
                                      keyed_purchases_as(guests if kind == "guests" else members)))
        healthz = wrk(url + "/healthz", seconds, connections)
    finally:
        store.stop()
    median = {kind: statistics.median(run["rps"] for run in found) for kind, found in runs.items()}
    return {"shoppers": count, "rounds": rounds, "healthz_rps": healthz["rps"],
            "guests_rps": [run["rps"] for run in runs["guests"]],
            "signed_in_rps": [run["rps"] for run in runs["signed_in"]],
            "guests_p99_ms": [run["p99_ms"] for run in runs["guests"]],
            "signed_in_p99_ms": [run["p99_ms"] for run in runs["signed_in"]],
            # every answer the 409 refusal (not a 403 of a session not recognised, not a 503)
            "answers_not_409": sum(others_of(run) for found in runs.values() for run in found),
            "signed_in_x_guests": round(median["signed_in"] / median["guests"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--shoppers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if not phases or set(phases) - set(PHASES):
        raise SystemExit(f"--phases takes some of {', '.join(PHASES)}, comma-separated")
    server = postgres.start(postgres.find_bindir(), durable=True)
    figures: dict = {}
    try:
        if {"hash", "loop"} & set(phases):
            inventory = Inventory(Settings(database_url=server.url))
            inventory.upgrade_schema()
            try:
                if "hash" in phases:
                    figures["hash"] = hashing(inventory, args.seconds / 2)
                else:
                    made = inventory.sign_up("bench@example.com", PASSWORD)
                    inventory.verify_email(made.verify_token)
                if "loop" in phases:
                    figures["loop"] = loop_lag(inventory, 200)
            finally:
                inventory.close()
        if "stampede" in phases:
            figures["stampede"] = stampede(_fresh(server), args.seconds, args.connections, args.shoppers,
                                           args.rounds)
    finally:
        server.stop()
    print(json.dumps(figures, indent=2))


def _fresh(server) -> str:
    """A database of its own for the stampede (the hash phase left accounts in the first)."""
    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(make_url(server.url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text('CREATE DATABASE "stampede"'))
    admin.dispose()
    return make_url(server.url).set(database="stampede").render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
