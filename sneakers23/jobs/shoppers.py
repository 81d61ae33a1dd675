"""The shoppers of a drop rehearsal (`sneakers23 drop rehearse`): actors spread over the cluster's
nodes, each running its shoppers as coroutines on one event loop, as the stampede's buyers are.

Each shopper does what a browser does, through the same doors as a person: it opens the page (its
cookie, its cart token, its form token), opens a socket and joins the product's and its cart's
channels, waits for the release push, then buys a size (the buy button's endpoint), or adds it to
its cart over the socket and checks out (the checkout form). Every request and every push it gets is
noted, with the time: the rehearsal's event log (jobs/event_log.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
import uuid
from dataclasses import dataclass
from html import unescape

import ray

from sneakers23.domain.checkout import CHECKOUT_MESSAGES, CheckoutRefusal
from sneakers23.jobs.buyers import RETRY_FOR_S, UNAVAILABLE, purchase_over_http, retry_after
from sneakers23.jobs.event_log import Row
from sneakers23.serve.shoppers import COOKIE, FORM_TOKEN_FIELD, form_token_in

HEARTBEAT_S = 25.0  # as the Phoenix client: the store closes a socket silent for 60 s
REPLY_WITHIN_S = 30.0
RELEASE_LATE_S = 120.0  # a shopper who has not seen the release this long after its time gives up
SOLD_OUT = ("sold_out", "out_of_stock")  # a purchase's refusal, a checkout's
CONNECTIONS_PER_ADDRESS = 1_000
RECONNECT_AFTER_MS = (10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000)  # phoenix.js's, then 5 s


@dataclass(frozen=True)
class Plan:
    """One shopper's part in the scenario, drawn by the driver (jobs/scenario.py)."""

    number: int
    arrive_at: float  # wall clock (time.time())
    buy_now: bool
    sizes: tuple[int, ...]  # the item ids it wants, first choice first
    another_size: bool  # on a sold-out size: tries the next one (else it leaves)
    most_sizes: int
    reload_at: float | None  # it reloads the page then (before the release)
    leave_at: float | None  # it leaves then (before the release)


class Refused(Exception):
    """A join the store refused (its reply's reason)."""


class Socket:
    """One tab's socket: the product's and the cart's channels, replies matched to their requests,
    every push noted."""

    def __init__(self, shopper: "Shopper"):
        self.shopper = shopper
        self.ws = None
        self.refs = itertools.count(1)
        self.waiting: dict[str, asyncio.Future] = {}
        self.join_refs: dict[str, str] = {}  # by topic: a channel's messages carry its join's ref
        self.tasks: list[asyncio.Task] = []
        self.closing = False

    async def open(self, session, url: str, cookie: str) -> None:
        """Connected, trying again as the Phoenix client does when the store turns it away (429, 503)."""
        import aiohttp

        socket_url = url.replace("http", "ws", 1) + "/product_socket/websocket?vsn=2.0.0"
        for pause_ms in (*RECONNECT_AFTER_MS, None):
            try:
                self.ws = await session.ws_connect(socket_url, headers={"Cookie": f"{COOKIE}={cookie}"},
                                                   autoping=True, max_msg_size=1 << 20)
                break
            except aiohttp.WSServerHandshakeError as refused:
                self.shopper.note("request", "socket", None, f"http {refused.status}")
                if refused.status not in (429, 503) or pause_ms is None:
                    raise
                await asyncio.sleep(pause_ms / 1000)
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._read()), loop.create_task(self._beat())]

    async def request(self, topic: str, event: str, payload: dict) -> dict:
        ref, join_ref = str(next(self.refs)), self.join_refs.get(topic)
        reply = asyncio.get_running_loop().create_future()
        self.waiting[ref] = reply
        await self.ws.send_str(json.dumps([join_ref, ref, topic, event, payload]))
        try:
            return await asyncio.wait_for(reply, REPLY_WITHIN_S)
        finally:
            self.waiting.pop(ref, None)

    async def join(self, topic: str, payload: dict, step: str = "join") -> dict:
        started = time.perf_counter()
        self.join_refs[topic] = str(next(self.refs))
        reply = await self.request(topic, "phx_join", payload)
        ok = reply.get("status") == "ok"
        self.shopper.note("request", step, started, "ok" if ok else str(reply.get("response", {}).get("reason")))
        if not ok:
            raise Refused(reply.get("response", {}).get("reason"))
        return reply["response"]

    async def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.shopper.note("visit", "socket_closed", None, "closed")
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def _beat(self) -> None:
        for ref in itertools.count(1):
            await asyncio.sleep(HEARTBEAT_S)
            await self.ws.send_str(json.dumps([None, f"h{ref}", "phoenix", "heartbeat", {}]))

    async def _read(self) -> None:
        import aiohttp

        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            _join_ref, ref, topic, event, payload = json.loads(message.data)
            if event == "phx_reply":
                if (reply := self.waiting.get(ref)) is not None and not reply.done():
                    reply.set_result(payload)
                continue
            self.shopper.pushed(topic, event, payload)
        if not self.closing:
            self.closing = True
            self.shopper.note("visit", "socket_closed", None, "by the store")
        for reply in self.waiting.values():  # (closed by the store: nothing more will answer)
            if not reply.done():
                reply.set_exception(ConnectionError("the socket closed"))


class Shopper:
    def __init__(self, crowd: "Shoppers", plan: Plan, url: str, session):
        self.crowd, self.plan, self.url, self.session = crowd, plan, url, session
        self.cookie: str | None = None
        self.form_token = self.cart_topic = self.cart_token = None
        self.released = asyncio.Event()
        self.out: set[int] = set()
        self.cart_version = 0
        self.socket: Socket | None = None

    # --- what it notes ---

    def note(self, kind: str, step: str, started: float | None, outcome: str, item_id: int | None = None,
             level: str | None = None) -> None:
        now = time.time()
        latency = None if started is None else (time.perf_counter() - started) * 1000
        self.crowd.rows.append(Row(self.plan.number, kind, step, now, latency, outcome, item_id, level))

    def pushed(self, topic: str, event: str, payload: dict) -> None:
        item_id = payload.get("item_id") if isinstance(payload, dict) else None
        level = payload.get("level") if isinstance(payload, dict) else None
        self.note("push", event, None, "received", item_id, level)
        if event == "released":
            self.released.set()
        elif event == "stock_change" and level == "out":
            self.out.add(item_id)
        elif event == "stock_change":
            self.out.discard(item_id)

    # --- the visit ---

    async def visit(self) -> None:
        import aiohttp

        plan = self.plan
        await asyncio.sleep(max(0.0, plan.arrive_at - time.time()))
        self.crowd.arrived += 1
        try:
            await self._open()
            if plan.reload_at is not None:
                await asyncio.sleep(max(0.0, plan.reload_at - time.time()))
                await self.socket.close()
                await self._open()
            if plan.leave_at is not None:
                await asyncio.sleep(max(0.0, plan.leave_at - time.time()))
                self.note("visit", "leave", None, "left")
                return
            try:
                await asyncio.wait_for(self.released.wait(), self.crowd.release_at + RELEASE_LATE_S - time.time())
            except asyncio.TimeoutError:
                self.note("visit", "release", None, "never seen")
                return
            await self._shop()
            await asyncio.sleep(self.crowd.linger_s)
        except Refused:
            pass  # (noted with its reason)
        except (OSError, asyncio.TimeoutError, ConnectionError, aiohttp.ClientError) as error:
            self.note("visit", "error", None, error.__class__.__name__)
        finally:
            if self.socket is not None:
                await self.socket.close()
            self.crowd.done += 1

    async def _open(self) -> None:
        """The page, then its socket with both channels joined (as store.js does)."""
        started = time.perf_counter()
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
            async with self.session.get(self.url + "/", headers=headers) as page:
                text = await page.text()
                if COOKIE in page.cookies:
                    self.cookie = page.cookies[COOKIE].value
                status, wait_s = page.status, retry_after(page.headers.get("Retry-After"))
            if status not in (429, 503) or time.monotonic() + wait_s > deadline:
                break
            await asyncio.sleep(wait_s)  # (as a person would press reload: a page that says when)
        cart = re.search(r'data-cart-id="([^"]+)" data-cart-token="([^"]+)"', text)
        self.form_token = form_token_in(text)
        if status != 200 or cart is None or self.form_token is None or self.cookie is None:
            self.note("request", "page", started, f"http {status}")
            raise Refused("page")
        self.note("request", "page", started, "ok")
        self.cart_topic, self.cart_token = f"cart:{unescape(cart[1])}", unescape(cart[2])
        self.socket = Socket(self)
        await self.socket.open(self.session, self.url, self.cookie)
        product = await self.socket.join(f"product:{self.crowd.product_id}", {})
        for item in product.get("items", []):  # (the join's state: a size already out needs no push)
            if item["level"] == "out":
                self.out.add(item["id"])
                self.note("state", "join", None, "out", item["id"], "out")
        if product.get("released"):
            self.released.set()
        cart = await self.socket.join(self.cart_topic, {"token": self.cart_token, "page": "/"}, "join_cart")
        self.cart_version = cart.get("version", 0)

    async def _shop(self) -> None:
        tried = 0
        for item_id in self.plan.sizes:
            if item_id in self.out:
                continue  # (the page shows it sold out: not pressed)
            if tried == self.plan.most_sizes:
                return
            tried += 1
            outcome = await (self._buy(item_id) if self.plan.buy_now else self._add_and_check_out(item_id))
            if outcome not in SOLD_OUT or not self.plan.another_size:
                return
            self.out.add(item_id)

    async def _buy(self, item_id: int) -> str:
        key, deadline = uuid.uuid4().hex, time.monotonic() + RETRY_FOR_S
        started = time.perf_counter()
        while True:
            outcome, wait_s = await purchase_over_http(self.session, self.url, self.cookie, self.form_token, item_id, key)
            if outcome != UNAVAILABLE or time.monotonic() + wait_s > deadline:
                break
            await asyncio.sleep(wait_s)
        outcome = "error" if outcome == UNAVAILABLE else outcome
        self.note("request", "purchase", started, outcome, item_id)
        return outcome

    async def _add_and_check_out(self, item_id: int) -> str:
        started = time.perf_counter()
        reply = await self.socket.request(self.cart_topic, "add_item", {"item_id": item_id})
        added = reply.get("status") == "ok"
        outcome = "ok" if added else str(reply.get("response", {}).get("reason"))
        self.note("request", "add", started, outcome, item_id)
        if not added:
            return outcome
        cart = reply["response"]
        outcome = await self._check_out(cart["version"], [line["item_id"] for line in cart["items"]], item_id)
        if outcome in SOLD_OUT:  # (its size stays struck through in the cart: taken out before the next)
            await self.socket.request(self.cart_topic, "remove_item", {"item_id": item_id})
        return outcome

    async def _check_out(self, version: int, item_ids: list[int], item_id: int) -> str:
        form = {"version": str(version), "item_ids": ",".join(map(str, item_ids)), FORM_TOKEN_FIELD: self.form_token}
        deadline = time.monotonic() + RETRY_FOR_S
        started = time.perf_counter()
        while True:
            async with self.session.post(self.url + "/checkout", data=form,
                                         headers={"Cookie": f"{COOKIE}={self.cookie}"}) as answer:
                text = await answer.text()
                status, wait_s = answer.status, retry_after(answer.headers.get("Retry-After"))
            if status not in (429, 503) or time.monotonic() + wait_s > deadline:
                break
            await asyncio.sleep(wait_s)
        if status == 200:
            outcome = "sold"
        elif status == 409 and (said := re.search(r"data-checkout-message>([^<]*)<", text)):
            outcome = checkout_refusal(unescape(said[1]))
        else:
            outcome = f"http {status}"
        self.note("request", "checkout", started, outcome, item_id)
        return outcome


def checkout_refusal(message: str) -> str:
    """The reason of a refused checkout, from the message its page shows (the original's texts,
    domain/checkout.py); a purchase that failed at the drop engine says why after it."""
    for reason, text in CHECKOUT_MESSAGES.items():
        if message == text or message.startswith(text + " ("):
            if reason is CheckoutRefusal.FAILED and "sold out" in message:
                return "sold_out"
            return str(reason)
    return "refused"


@ray.remote(num_cpus=0, enable_task_events=False, max_concurrency=4)
class Shoppers:
    """Some of a rehearsal's shoppers, on one node: `run` keeps them until each is done."""

    def __init__(self, url: str, product_id: int, linger_s: float, source_addresses: list[str] | None = None):
        self.url = url.rstrip("/")
        self.product_id, self.linger_s = product_id, linger_s
        self.release_at = 0.0
        self.sources = source_addresses or [None]
        self.rows: list[Row] = []
        self.arrived = self.done = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def progress(self) -> tuple[int, int]:
        return self.arrived, self.done

    async def run(self, plans: list[Plan], release_at: float) -> dict:
        """Every shopper's visit, for a release at `release_at`; returns the log's rows, this
        actor's node and the CPU it spent."""
        import aiohttp

        self.release_at = release_at
        cpu = time.process_time()
        sessions = [aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS_PER_ADDRESS, local_addr=(source, 0) if source else None),
            cookie_jar=aiohttp.DummyCookieJar(),  # (each shopper sends its own cookie)
            timeout=aiohttp.ClientTimeout(total=RETRY_FOR_S)) for source in self.sources]
        try:
            await asyncio.gather(*(Shopper(self, plan, self.url, sessions[plan.number % len(sessions)]).visit()
                                   for plan in plans))
        finally:
            for session in sessions:
                await session.close()
        node = self.node_id()
        return {"rows": [tuple(row) for row in self.rows], "node": node, "cpu_s": time.process_time() - cpu}


def choose_sizes(rng: random.Random, weights: dict[int, float]) -> tuple[int, ...]:
    """Every size, in the order a shopper wants them: drawn one after another by their weights
    (sizes of weight 0 last, in random order)."""
    left = dict(weights)
    order = []
    while left:
        weighted = {item: weight for item, weight in left.items() if weight > 0}
        pool = weighted or left
        item = rng.choices(list(pool), weights=list(pool.values()) if weighted else None)[0]
        order.append(item)
        del left[item]
    return tuple(order)
