"""The cart's figures, each beside a baseline measured in the same run, on PostgreSQL with fsync on
and the store as `sneakers23 serve` runs it (one node):

1. checkouts per second via HTTP (POST /checkout: a cart of one pair, each request its own shopper
   and cart, so each is a real sale and a real cart change) against the bare purchase endpoint
   (POST /api/items/{id}/purchase, each request its own shopper) and GET /healthz: wrk, same
   connections, back to back;
2. from a cart change in one tab to the `cart` push in the shopper's other tab, with SHOPPERS
   shoppers holding two tabs each (every shopper adds a size, then removes it, paced at RATE
   changes a second): p50/p99, against the same tabs on a bare relay (bench/bare_cart_relay.py),
   which is the load generator's own floor.

    .venv/bin/python -m bench.checkout [--seconds 10] [--connections 50] [--shoppers 1000] [--rate 250]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx

from bench.drop_engine import caches_caught_up, wrk
from bench.servers import Process, start_store
from harness.ports import free_port
from sneakers23.db.models import CartItemRow, CartRow
from sneakers23.inventory import Inventory
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, CartTokens, FormTokens, ShopperCookies
from sneakers23.settings import Settings
from harness import postgres, shop
from harness.waiting import wait_for

PURCHASE_ITEM = 3  # product 1: what the bare purchases buy
CHECKOUT_ITEM = 16  # product 2: what the carts hold
TAB_ITEM = 5  # what the tabs add and remove
PLENTY = 10_000_000


def requests_as(shoppers: list[tuple[str, str]], path: str, body: str | None) -> str:
    """A wrk script: every request from the next shopper (each of wrk's threads takes every
    other one), a POST of `body` to `path`, with the shopper's cookie and form token (in the
    header, and in the form when there is one), as its page gives them."""
    listing = ",\n".join(f'{{"{cookie}", "{token}"}}' for cookie, token in shoppers)
    headers = f'["Cookie"] = "sneakers23_shopper=" .. shopper[1], ["{FORM_TOKEN_HEADER}"] = shopper[2]'
    if body is not None:
        headers += ', ["Content-Type"] = "application/x-www-form-urlencoded"'
    form = f"{json.dumps(body + '&csrf_token=')} .. shopper[2]" if body is not None else "nil"
    return (f"shoppers = {{\n{listing}\n}}\nthreads = 0\n"
            "function setup(thread)\n  thread:set('id', threads)\n  threads = threads + 1\nend\n"
            "function init(args)\n  counter = id\nend\n"
            "function request()\n  local shopper = shoppers[(counter % #shoppers) + 1]\n  counter = counter + 2\n"
            f"  return wrk.format('POST', '{path}', {{{headers}}}, {form})\nend\n")


def carts_for(inventory: Inventory, shopper_ids: list[str], item_id: int) -> None:
    """A cart of one pair for each shopper, written straight into the tables (the caches heal it in)."""
    now = datetime.now(timezone.utc)
    with inventory.engine.begin() as connection:
        connection.execute(CartRow.__table__.insert(),
                           [{"shopper_id": s, "version": 1, "updated_at": now} for s in shopper_ids])
        connection.execute(CartItemRow.__table__.insert(),
                           [{"shopper_id": s, "item_id": item_id, "added_at": now} for s in shopper_ids])


def settled(count, quiet_s: float = 1.0, timeout: float = 30) -> int:
    """A count once it stops moving (what wrk left under way has finished)."""
    deadline = time.monotonic() + timeout
    last = count()
    while True:
        time.sleep(quiet_s)
        now = count()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def carts_emptied(inventory: Inventory, bought: int, timeout: float = 30) -> int:
    """Carts emptied, once as many as were bought are (the checkouts wrk left under way finish
    their clearing: a shopper who goes away mid-checkout still has the cart cleared). Past the
    timeout, the count as it is: the report shows a shortfall rather than stopping."""
    deadline = time.monotonic() + timeout
    while True:
        with inventory.engine.connect() as connection:
            emptied = connection.exec_driver_sql(
                "SELECT count(*) FROM carts WHERE shopper_id NOT IN (SELECT shopper_id FROM cart_items)").scalar_one()
        if emptied >= bought or time.monotonic() > deadline:
            return emptied
        time.sleep(0.2)


def wait_listening(port: int) -> None:
    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(answers, timeout=30, interval=0.1, what=f"the relay on port {port}")


def summary(values: list[float]) -> dict:
    if len(values) < 2:
        return {"count": len(values)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "p50_ms": round(cuts[49], 1), "p99_ms": round(cuts[98], 1),
            "max_ms": round(max(values), 1)}


def tabs(url: str, shoppers: list[tuple[str, ...]], rate: float, urls: list[str] | None = None) -> dict:
    """bench/cart_tabs.py's tabs: both of a shopper's at `url`, or the first at urls[0] and the
    second at urls[1]; a shopper's third field is its sockets' Cookie header."""
    command = {"url": url, "shoppers": shoppers, "item_id": TAB_ITEM, "rate": rate, **({"urls": urls} if urls else {})}
    result = subprocess.run([sys.executable, "-m", "bench.cart_tabs"], capture_output=True, text=True,
                            input=json.dumps(command) + "\n")
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    raw = json.loads(result.stdout)
    return {"tabs": raw["opened"], "changes": raw["changes"], "lost": raw["lost"], "errors": raw["errors"][:3],
            "seconds": round(raw["seconds"], 1), "generator_cpu_s": round(raw["cpu_s"], 1),
            "tab_to_tab": summary(raw["tab_to_tab_ms"]), "reply": summary(raw["reply_ms"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--shoppers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=250, help="cart changes a second, all tabs together")
    parser.add_argument("--requests", type=int, default=40_000, help="shoppers prepared for each wrk run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    server = postgres.start(postgres.find_bindir(), durable=True)
    store = relay = None
    figures: dict = {}
    secret = secrets.token_urlsafe(24)
    try:
        inventory = Inventory(Settings(database_url=server.url))
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        for product in (1, 2):
            inventory.release(product)
        for item_id in (PURCHASE_ITEM, CHECKOUT_ITEM, TAB_ITEM):
            shop.set_available(inventory, item_id, PLENTY)
        cookies = ShopperCookies(secret)
        buyers = [cookies.new() for _ in range(args.requests)]
        checkers = [cookies.new() for _ in range(args.requests)]
        warm_buyer, warm_checker = cookies.new(), cookies.new()
        carts_for(inventory, [shopper for shopper, _cookie in [*checkers, warm_checker]], CHECKOUT_ITEM)

        port = free_port()
        store = start_store("haproxy+throughput", server.url, port, {"SNEAKERS23_SECRET_KEY": secret})
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SNEAKERS23_DATABASE_URL": server.url, "RAY_TMPDIR": store.env["RAY_TMPDIR"]}
        caches_caught_up(env)

        # 1. Checkout against the bare purchase, via HTTP.
        for _warm_up in range(2):
            wrk(url + "/healthz", 2, args.connections)
        # The first purchase of a product starts its sales actor (about a second): not measured.
        form_tokens = FormTokens(secret)
        for path, (shopper_id, cookie), body in (
                (f"/api/items/{PURCHASE_ITEM}/purchase", warm_buyer, None),
                ("/checkout", warm_checker, f"version=1&item_ids={CHECKOUT_ITEM}&csrf_token={form_tokens.issue(warm_checker[0])}")):
            httpx.post(url + path, cookies={"sneakers23_shopper": cookie}, content=body, timeout=60,
                       headers={"Content-Type": "application/x-www-form-urlencoded",
                                FORM_TOKEN_HEADER: form_tokens.issue(shopper_id)}).raise_for_status()
        healthz = wrk(url + "/healthz", args.seconds, args.connections)
        purchase = wrk(f"{url}/api/items/{PURCHASE_ITEM}/purchase", args.seconds, args.connections,
                       requests_as([(cookie, form_tokens.issue(s)) for s, cookie in buyers], f"/api/items/{PURCHASE_ITEM}/purchase", None))
        checkout = wrk(f"{url}/checkout", args.seconds, args.connections,
                       requests_as([(cookie, form_tokens.issue(s)) for s, cookie in checkers], "/checkout", f"version=1&item_ids={CHECKOUT_ITEM}"))
        # (each by its own size: the last requests of a run may commit after it ends)
        bought = shop.order_count(inventory, item_id=PURCHASE_ITEM) - 1  # (less the warm-up's)
        checked_out = settled(lambda: shop.order_count(inventory, item_id=CHECKOUT_ITEM)) - 1
        emptied = carts_emptied(inventory, checked_out + 1) - 1
        figures["http"] = {
            "healthz": healthz, "purchase": purchase, "checkout": checkout,
            "orders_from_purchases": bought, "orders_from_checkouts": checked_out,
            "carts_emptied": emptied,
            "checkout_x_purchase": round(checkout["rps"] / purchase["rps"], 2),
            "checkout_p99_x_purchase": round(checkout["p99_ms"] / purchase["p99_ms"], 2),
            "purchase_x_healthz": round(purchase["rps"] / healthz["rps"], 2)}

        # 2. Tab to tab: the store, then the bare relay, the same tabs and pace.
        tokens = CartTokens(secret)
        shoppers = [(shopper, tokens.issue(shopper)) for shopper, _cookie in
                    (cookies.new() for _ in range(args.shoppers))]
        figures["tabs_store"] = tabs(f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0", shoppers, args.rate)
        relay_port = free_port()
        relay = Process([sys.executable, "-m", "bench.bare_cart_relay", str(relay_port)], {**os.environ}, "cart-relay")
        wait_listening(relay_port)
        figures["tabs_bare_relay"] = tabs(f"ws://127.0.0.1:{relay_port}/", shoppers, args.rate)
        store_p99 = figures["tabs_store"]["tab_to_tab"].get("p99_ms")
        bare_p99 = figures["tabs_bare_relay"]["tab_to_tab"].get("p99_ms")
        if store_p99 and bare_p99:
            figures["tab_to_tab_p99_x_bare_relay"] = round(store_p99 / bare_p99, 1)
        inventory.close()
    finally:
        for process in (relay, store):
            if process is not None:
                process.stop()
        server.stop()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
