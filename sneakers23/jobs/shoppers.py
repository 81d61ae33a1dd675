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
import json
import os
import random
import re
import time
import uuid
from dataclasses import dataclass
from html import unescape

import ray

from sneakers23.domain.checkout import CHECKOUT_MESSAGES, CheckoutRefusal
from sneakers23.domain.purchases import Refusal
from sneakers23.jobs.buyers import (RETRY_AFTER_S, RETRY_FOR_S, UNAVAILABLE, asked_until_answered, purchase_over_http,
                                   retry_after)
from sneakers23.jobs.event_log import Row
from sneakers23.jobs.shopper_socket import Refused, Socket
from sneakers23.serve.shoppers import COOKIE, FORM_TOKEN_FIELD, FORM_TOKEN_HEADER, SESSION_COOKIE, form_token_in

# As static/js/draws.js: its entry's outcome read when the draw's end is pushed (within the spread
# the push says), and asked again this often after the close in case that push was missed.
DRAW_ASKED_AGAIN_S = 15.0
QUEUE_TRY_AGAIN_S = 3.0  # as static/js/queue.js tries a refused join again (TRY_AGAIN_MS)
JOIN_TRIES = 3  # … at most this many times, for these reasons:
PASSING_REFUSALS = ("joining", "unavailable", "error", "proof_of_work")
RELEASE_LATE_S = 120.0  # a shopper who has not seen the release this long after its time gives up
SOLD_OUT = (str(Refusal.SOLD_OUT), str(CheckoutRefusal.OUT_OF_STOCK))  # a purchase's refusal, a checkout's


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
    session: str | None = None  # its account's session cookie, signed in (a queued drop's shoppers)
    presses_early: bool = False  # in a queue: presses buy once while still in line (to be refused)


class Shopper:
    def __init__(self, crowd: "Shoppers", plan: Plan, url: str, session):
        self.crowd, self.plan, self.url, self.session = crowd, plan, url, session
        self.cookie: str | None = None
        self.form_token = self.cart_topic = self.cart_token = None
        self.released = asyncio.Event()
        self.out: set[int] = set()
        self.socket: Socket | None = None
        # A queued drop's: its turn came, or the line told it the pairs are gone (or its place went)
        self.turn = asyncio.Event()
        self.in_line = asyncio.Event()  # (its place said it is in line, after the release)
        self.turned_away: str | None = None
        self.told_sold_out = False
        self.draw_over = asyncio.Event()  # (a draw's: its end pushed, with its pages' spread)
        self.draw_spread_s = 0.0

    def cookies(self) -> str:
        """Its Cookie header: the shopper's cookie, and its session's when it is signed in."""
        said = [f"{COOKIE}={self.cookie}"] if self.cookie else []
        if self.plan.session:
            said.append(f"{SESSION_COOKIE}={self.plan.session}")
        return "; ".join(said)

    # --- what it notes ---

    def note(self, kind: str, step: str, started: float | None, outcome: str, item_id: int | None = None,
             level: str | None = None, retries: int = 0, position: int | None = None) -> None:
        now = time.time()
        latency = None if started is None else (time.perf_counter() - started) * 1000
        self.crowd.rows.append(Row(self.plan.number, kind, step, now, latency, outcome, item_id, level, retries,
                                   position))

    def pushed(self, topic: str, event: str, payload: dict) -> None:
        if event == "place" and isinstance(payload, dict):
            self._placed(payload, "push")
            return
        item_id = payload.get("item_id") if isinstance(payload, dict) else None
        level = payload.get("level") if isinstance(payload, dict) else None
        self.note("push", event, None, "received", item_id, level)
        if event == "released":
            self.released.set()
        elif event == "draw_finished":
            spread = payload.get("spread_s") if isinstance(payload, dict) else None
            self.draw_spread_s = float(spread) if isinstance(spread, (int, float)) else 0.0
            self.draw_over.set()
        elif event == "stock_change" and level == "out":
            self.out.add(item_id)
            self._over_yet()
        elif event == "stock_change":
            self.out.discard(item_id)

    def _placed(self, view: dict, kind: str = "state") -> None:
        """Its place in a queued drop's line, as a push or its join's answer said (noted with its
        stage and position): its turn, or the end of its wait (sold out, or its place gone)."""
        stage = str(view.get("stage"))
        position = view.get("position")
        self.note(kind, "place", None, stage, position=position if isinstance(position, int) else None,
                  level="sold_out" if view.get("sold_out") else None)
        if stage == "admitted":
            self.turn.set()
        elif stage in ("queue", "pre_queue"):
            if stage == "queue":
                self.in_line.set()
            self.told_sold_out = bool(view.get("sold_out"))  # (a turn unused gives its pairs back: the line may move again)
        elif stage in ("expired", "removed", "bought"):
            self._stop_waiting(f"place {stage}")
        self._over_yet()

    def _over_yet(self) -> None:
        """Told in line that the pairs are gone, it waits on while the page shows a size with pairs
        left (held by turns, which may give them back), and leaves once every size shows sold out."""
        if self.told_sold_out and self.out >= set(self.plan.sizes):
            self._stop_waiting("sold out in line")

    def _stop_waiting(self, why: str) -> None:
        if not self.turn.is_set():
            self.turned_away = why
            self.turn.set()  # (it stops waiting: `turned_away` says why)

    def _product_joined(self, state: dict) -> None:
        """A product join's answer: a size already out, or the release already made, needs no push."""
        for item in state.get("items", []):
            if item.get("level") == "out":
                self.out.add(item["id"])
                self.note("state", "join", None, "out", item["id"], "out")
            else:
                self.out.discard(item.get("id"))
        if state.get("released"):
            self.note("state", "join", None, "released")
            self.released.set()
        self._over_yet()

    # --- the visit ---

    async def visit(self) -> None:
        plan = self.plan
        await asyncio.sleep(max(0.0, plan.arrive_at - time.time()))
        self.crowd.arrived += 1
        # (its lag behind the plan, as a latency: the shoppers' actors falling behind is the load
        # generator's own limit, and the report says so)
        self.note("visit", "arrive", time.perf_counter() - max(0.0, time.time() - plan.arrive_at), "ok")
        try:
            await self._open()
            if self.crowd.mode == "draw" and not await self._enter_draw():
                return
            if plan.reload_at is not None:
                await asyncio.sleep(max(0.0, plan.reload_at - time.time()))
                await self.socket.close()
                await self._open()  # (in a queue: the same place, found again without a proof)
            if plan.leave_at is not None:
                await asyncio.sleep(max(0.0, plan.leave_at - time.time()))
                self.note("visit", "leave", None, "left")
                if self.crowd.mode == "draw":  # (an entrant who left comes back with the letter: the draw is its own)
                    await self.socket.close()
                    await self._told_of_the_draw()
                return
            if self.crowd.mode == "draw":  # (its page asks from the close on: a push missed, it asks all the same)
                await self._told_of_the_draw()  # (its pair, if it won, is bought for it)
            elif not await (self._my_turn() if self.crowd.mode == "queue" else self._released()):
                return
            else:
                await self._shop()
            await asyncio.sleep(self.crowd.linger_s)
        except Refused:
            pass  # (noted with its reason)
        except Exception as error:  # (noted; never the end of the other shoppers on this loop)
            self.note("visit", "error", None, type(error).__name__)
        finally:
            if self.socket is not None:
                await self.socket.close()
            self.crowd.done += 1

    async def _released(self) -> bool:
        """Whether the release came (a push, or a join that said so), waiting for it: not when its
        socket is lost for good, nor long after the release time."""
        await self._until(self.released, past_s=RELEASE_LATE_S)
        if not self.released.is_set():
            self.note("visit", "release", None, "never seen" if not self.socket.lost.is_set() else "socket lost")
        return self.released.is_set()

    async def _my_turn(self) -> bool:
        """Whether its turn in the queue came, waiting for it: not when the line says the pairs are
        gone or its place went, when its socket is lost for good, nor past the rehearsal's wait. One
        that presses early presses buy once while in line, first (the store must refuse it: not its
        turn)."""
        if self.plan.presses_early:
            await self._until(self.in_line, self.turn)
            if self.in_line.is_set() and not self.turn.is_set():
                await self._buy(next((item for item in self.plan.sizes if item not in self.out), self.plan.sizes[0]))
        await self._until(self.turn)
        if self.turned_away is not None:
            self.note("visit", "leave", None, self.turned_away)
            return False
        if not self.turn.is_set():
            self.note("visit", "turn", None, "never came" if not self.socket.lost.is_set() else "socket lost")
        return self.turn.is_set()

    async def _until(self, *events: asyncio.Event, past_s: float | None = None) -> None:
        """Until one of the events is set, the socket is lost for good, or `past_s` after the
        release time (by default, the rehearsal's wait in line) is over."""
        if any(event.is_set() for event in events):
            return
        past_s = self.crowd.wait_in_line_s if past_s is None else past_s
        waits = [asyncio.ensure_future(event.wait()) for event in (*events, self.socket.lost)]
        try:
            await asyncio.wait(waits, timeout=max(0.0, self.crowd.release_at + past_s - time.time()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _take_place(self) -> None:
        """Its place in the product's queue, as queue.js takes it: the queue read, a proof of work
        for its challenge (a browser's work), then the join of `queue:PRODUCT`, whose answer and
        pushes say where it stands. A place it holds already (a reload) is found again, with no work.
        While the queue takes no place yet, it asks again a moment later (a person presses the
        button again); a join refused for a passing reason is tried again, at most JOIN_TRIES times."""
        topic = f"queue:{self.crowd.product_id}"
        for attempt in range(1, JOIN_TRIES + 1):
            view = await self._view("queue", "queue")
            while not view.get("place") and not view.get("may_join"):
                if time.time() > self.crowd.release_at + RELEASE_LATE_S:
                    self.note("visit", "leave", None, "queue never open")
                    raise Refused("queue never open")
                await asyncio.sleep(QUEUE_TRY_AGAIN_S)
                view = await self._view("queue", "queue")
            work = view.get("work_challenge") if not view.get("place") else None
            params = {"altcha": await self._proof(work)} if work else {}
            try:
                await self.socket.join(topic, params, "join_queue", self._placed)
                return
            except Refused as refused:
                if str(refused) not in PASSING_REFUSALS or attempt == JOIN_TRIES:
                    raise
                await asyncio.sleep(0 if str(refused) == "proof_of_work" else QUEUE_TRY_AGAIN_S)

    async def _view(self, kind: str, step: str) -> dict:
        """The product's queue or draw as its page reads it (`GET /api/products/ID/KIND?record=0`),
        noted as `step`: with the visitor's place or entry, and a proof-of-work challenge while it
        may take one. Asked again after a 429 or 503, or a lost answer, as a page would; Refused
        for any other answer than 200."""
        import aiohttp

        started = time.perf_counter()
        path = f"{self.url}/api/products/{self.crowd.product_id}/{kind}?record=0"

        async def ask() -> tuple[tuple[int | None, dict], float | None]:
            try:
                async with self.session.get(path, headers={"Cookie": self.cookies()}) as answer:
                    busy = answer.status in (429, 503)
                    said = await answer.json(content_type=None) if answer.status == 200 else {}
                    return (answer.status, said), retry_after(answer.headers.get("Retry-After")) if busy else None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                return (None, {}), RETRY_AFTER_S

        (status, view), retries = await asked_until_answered(ask)
        ok = status == 200 and isinstance(view, dict)
        self.note("request", step, started, "ok" if ok else f"http {status}", retries=retries)
        if not ok:
            raise Refused(kind)
        return view

    async def _proof(self, challenge: dict) -> str:
        started = time.perf_counter()
        proof = await asyncio.to_thread(solved, challenge)  # (a browser's work: off the loop the other shoppers share)
        self.note("work", "proof", started, "solved")
        return proof

    async def _enter_draw(self) -> bool:
        """Its entry in the product's draw with its first size, as draws.js makes it: the draw read,
        a fresh proof of work, the entry posted. After a 429 or 503 it waits as told; after a lost
        answer, or a proof refused, it reads the draw again (the entry may have been made) and
        tries with a fresh proof. False when it could not enter (noted)."""
        item_id = self.plan.sizes[0]
        started, retries = time.perf_counter(), 0
        while True:
            view = await self._view("draw", "draw_view")
            if view.get("entry"):
                if retries == 0:
                    return True  # (a reload: entered already)
                self.note("request", "enter", started, "ok", item_id, retries=retries)
                return True
            if view.get("closed"):
                self.note("visit", "leave", None, "draw closed")
                return False
            proof = await self._proof(view["work_challenge"]) if view.get("work_challenge") else None
            status, said, wait_s = await self._post_entry(item_id, proof)
            if status in (200, 201):
                self.note("request", "enter", started, "ok", item_id, retries=retries)
                return True
            retried = status is None or status in (429, 503) or said.get("error") == "proof_of_work"
            if not retried or time.perf_counter() - started > RETRY_FOR_S:
                self.note("request", "enter", started, str(said.get("error") or f"http {status}"), item_id,
                          retries=retries)
                return False
            retries += 1
            await asyncio.sleep(wait_s)

    async def _post_entry(self, item_id: int, proof: str | None) -> tuple[int | None, dict, float]:
        """One try of a draw entry: (its status, None for a lost answer; its JSON; the pause before
        another try)."""
        import aiohttp

        try:
            async with self.session.post(f"{self.url}/api/products/{self.crowd.product_id}/draw/{item_id}",
                                         json={"altcha": proof},
                                         headers={"Cookie": self.cookies(), FORM_TOKEN_HEADER: self.form_token}) as answer:
                try:
                    said = await answer.json(content_type=None)
                except ValueError:  # (a busy proxy's text)
                    said = None
                wait_s = retry_after(answer.headers.get("Retry-After")) if answer.status in (429, 503) else 0.0
                return answer.status, said if isinstance(said, dict) else {}, wait_s
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None, {}, RETRY_AFTER_S

    async def _told_of_the_draw(self) -> None:
        """From the close (the release) on, its entry's outcome as its page learns it: read at the
        close, then when the draw's end is pushed (after a random part of the spread it says), or
        every DRAW_ASKED_AGAIN_S when none comes (a shopper who left, a push missed), until the draw
        is finished; noted with the time from the release (`sold` for a pair bought for it, else
        the outcome: `lost`, `failed`, `removed`), or "never told", past RELEASE_LATE_S."""
        await asyncio.sleep(max(0.0, self.crowd.release_at - time.time()))
        started = time.perf_counter() - max(0.0, time.time() - self.crowd.release_at)  # (timed from the release)
        deadline = self.crowd.release_at + RELEASE_LATE_S
        asked = 0
        while True:
            if asked:
                await self._until_the_draws_end()
            asked += 1
            try:
                view = await self._view("draw", "draw_check")
            except Refused:
                view = {}
            entry = view.get("entry") or {}
            if view.get("finished") and entry.get("outcome") not in (None, "entered", "won"):
                outcome = "sold" if entry["outcome"] == "bought" else str(entry["outcome"])
                self.note("request", "draw", started, outcome, entry.get("item_id"))
                return
            if time.time() > deadline:
                self.note("visit", "draw", None, "never told")
                return

    async def _until_the_draws_end(self) -> None:
        """The draw's end pushed (then a random part of its spread, as every page waits), or
        DRAW_ASKED_AGAIN_S without it."""
        if not self.draw_over.is_set():
            try:
                await asyncio.wait_for(self.draw_over.wait(), DRAW_ASKED_AGAIN_S)
            except asyncio.TimeoutError:
                return
        await asyncio.sleep(random.uniform(0.0, self.draw_spread_s))
        self.draw_over.clear()  # (read once for it: a read that finds the draw unfinished waits again)

    async def _open(self) -> None:
        """The page, then its socket with both channels joined (as store.js does), and its place in a
        queued drop's line (as queue.js takes it)."""
        started = time.perf_counter()

        async def page() -> tuple[tuple[int | None, str], float | None]:
            """(Loaded again as a person would: when it says when, or when its answer was lost.)"""
            import aiohttp

            headers = {"Cookie": self.cookies()} if self.cookie or self.plan.session else {}
            try:
                async with self.session.get(self.url + "/", headers=headers) as answer:
                    text = await answer.text(errors="replace")
                    if COOKIE in answer.cookies:
                        self.cookie = answer.cookies[COOKIE].value
                    busy = answer.status in (429, 503)
                    return (answer.status, text), retry_after(answer.headers.get("Retry-After")) if busy else None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                return (None, ""), RETRY_AFTER_S

        (status, text), retries = await asked_until_answered(page)
        cart = re.search(r'data-cart-id="([^"]+)" data-cart-token="([^"]+)"', text)
        self.form_token = form_token_in(text)
        if status != 200 or cart is None or self.form_token is None or self.cookie is None:
            self.note("request", "page", started, f"http {status}", retries=retries)
            raise Refused("page")
        self.note("request", "page", started, "ok", retries=retries)
        self.cart_topic, self.cart_token = f"cart:{unescape(cart[1])}", unescape(cart[2])
        self.socket = Socket(self, self.session, self.crowd.socket_url, self.cookies())
        await self.socket.open()
        await self.socket.join(f"product:{self.crowd.product_id}", {}, "join", self._product_joined)
        await self.socket.join(self.cart_topic, {"token": self.cart_token, "page": "/"}, "join_cart", lambda _cart: None)
        if self.crowd.mode == "queue":
            await self._take_place()

    async def _shop(self) -> None:
        """Its sizes in turn: one it sees sold out, or is refused as sold out, sends it to the next
        (if it tries another size at all: else it leaves), at most `most_sizes` pressed."""
        tried = 0
        for item_id in self.plan.sizes:
            if tried == self.plan.most_sizes:
                return
            if item_id not in self.out:  # (a size the page shows sold out is not pressed)
                tried += 1
                outcome = await (self._buy(item_id) if self.plan.buy_now else self._add_and_check_out(item_id))
                if outcome not in SOLD_OUT:
                    return
                self.out.add(item_id)
            if not self.plan.another_size:
                self.note("visit", "leave", None, "sold out")
                return

    async def _buy(self, item_id: int) -> str:
        key = uuid.uuid4().hex  # (the same key on every try: a second try never buys a second pair)
        started = time.perf_counter()

        async def buy() -> tuple[str, float | None]:
            outcome, wait_s = await purchase_over_http(self.session, self.url, self.cookies(), self.form_token, item_id, key)
            return outcome, wait_s if outcome == UNAVAILABLE else None

        outcome, retries = await asked_until_answered(buy)
        outcome = "error" if outcome == UNAVAILABLE else outcome
        self.note("request", "purchase", started, outcome, item_id, retries=retries)
        return outcome

    async def _add_and_check_out(self, item_id: int) -> str:
        started = time.perf_counter()
        reply = await self.socket.request(self.cart_topic, "add_item", {"item_id": item_id})
        added = reply.get("status") == "ok"
        outcome = "ok" if added else str((reply.get("response") or {}).get("reason"))
        self.note("request", "add", started, outcome, item_id)
        if not added:
            return outcome
        cart = reply["response"]
        outcome = await self._check_out(cart["version"], [line["item_id"] for line in cart["items"]], item_id)
        if outcome in SOLD_OUT:  # (its size stays struck through in the cart: taken out before the next)
            removed = await self.socket.request(self.cart_topic, "remove_item", {"item_id": item_id})
            if removed.get("status") != "ok":
                self.note("visit", "leave", None, "cart not emptied")
                return "cart not emptied"  # (the next checkout would carry the sold-out size)
        return outcome

    async def _check_out(self, version: int, item_ids: list[int], item_id: int) -> str:
        """The checkout form posted, again while the store is unavailable or its answer is lost:
        the same form is the same key (the cart's version), sold once."""
        import aiohttp

        form = {"version": str(version), "item_ids": ",".join(map(str, item_ids)), FORM_TOKEN_FIELD: self.form_token}
        started = time.perf_counter()

        async def post() -> tuple[tuple[int | None, str], float | None]:
            try:
                async with self.session.post(self.url + "/checkout", data=form, headers={"Cookie": self.cookies()}) as answer:
                    text = await answer.text(errors="replace")
                    busy = answer.status in (429, 503)
                    return (answer.status, text), retry_after(answer.headers.get("Retry-After")) if busy else None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):  # (lost: the same form again)
                return (None, ""), RETRY_AFTER_S

        (status, text), retries = await asked_until_answered(post)
        if status == 200:
            outcome = "sold"
        elif status == 409 and (said := re.search(r"data-checkout-message>([^<]*)<", text)):
            outcome = checkout_refusal(unescape(said[1]))
        else:
            outcome = "error" if status in (None, 429, 503) else f"http {status}"
        self.note("request", "checkout", started, outcome, item_id, retries=retries)
        return outcome


def solved(challenge: dict) -> str:
    """The proof of work for a challenge, found as the page's script finds it (ALTCHA's), and
    written as its form field carries it."""
    import base64

    import altcha

    found = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], challenge["algorithm"],
                                      challenge["maxnumber"])
    if found is None:
        raise Refused("proof_of_work")
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**payload, "number": found.number}).encode()).decode()


def checkout_refusal(message: str) -> str:
    """The reason of a refused checkout, from the message its page shows (the original's texts,
    domain/checkout.py); a purchase that failed at the drop engine says why after it."""
    for reason, text in CHECKOUT_MESSAGES.items():
        if message == text or message.startswith(text + " ("):
            if reason is CheckoutRefusal.FAILED and "sold out" in message:  # (the drop engine's words for it)
                return str(Refusal.SOLD_OUT)
            return str(reason)
    return "refused"


@ray.remote(num_cpus=0, enable_task_events=False, max_concurrency=4)
class Shoppers:
    """Some of a rehearsal's shoppers, on one node: `run` keeps them until each is done."""

    def __init__(self, url: str, product_id: int, linger_s: float, source_addresses: list[str] | None = None,
                 socket_url: str | None = None, mode: str = "first-come", wait_in_line_s: float = RELEASE_LATE_S):
        self.url = url.rstrip("/")
        self.socket_url = (socket_url or url).rstrip("/")
        self.product_id, self.linger_s = product_id, linger_s
        # first-come; queue: each shopper takes a place in its line, and buys in its turn; draw: each
        # enters with its first size, and learns after the release whether a pair was bought for it
        self.mode = mode
        self.wait_in_line_s = wait_in_line_s  # from the release time: a shopper in line gives up after
        self.release_at = 0.0
        self.sources = source_addresses or [None]
        self.rows: list[Row] = []
        self.arrived = self.done = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def ready(self) -> str:
        """Its node, once what its shoppers need is loaded: the release time is fixed after this,
        so that no shopper's arrival waits for an import."""
        import aiohttp  # noqa: F401

        return self.node_id()

    async def progress(self) -> tuple[int, int]:
        return self.arrived, self.done

    async def run(self, plans: list[Plan], release_at: float) -> dict:
        """Every shopper's visit, for a release at `release_at`; returns the log's rows, this
        actor's node, the CPU it spent, and its machine's: every core's busy time meanwhile (the
        store's processes, Ray's and the shoppers' alike), to set the shoppers' share beside the rest."""
        import aiohttp

        self.release_at = release_at
        cpu, machine_busy, started = time.process_time(), machine_busy_s(), time.monotonic()
        sessions = [aiohttp.ClientSession(
            # (no limit: each shopper's socket holds a connection for its whole visit, and its
            # requests must never wait behind the other shoppers' sockets)
            connector=aiohttp.TCPConnector(limit=0, local_addr=(source, 0) if source else None),
            cookie_jar=aiohttp.DummyCookieJar(),  # (each shopper sends its own cookie)
            timeout=aiohttp.ClientTimeout(total=RETRY_FOR_S)) for source in self.sources]
        try:
            await asyncio.gather(*(Shopper(self, plan, self.url, sessions[plan.number % len(sessions)]).visit()
                                   for plan in plans))
        finally:
            for session in sessions:
                await session.close()
        node = self.node_id()
        busy = machine_busy_s()
        return {"rows": [tuple(row) for row in self.rows], "node": node, "cpu_s": time.process_time() - cpu,
                "machine": {"address": ray.util.get_node_ip_address(), "cores": os.cpu_count(),
                            "seconds": time.monotonic() - started,
                            "busy_cpu_s": None if busy is None or machine_busy is None else busy - machine_busy}}


def machine_busy_s() -> float | None:
    """The CPU seconds this machine's cores have been busy since it started (Linux's /proc/stat:
    all but idle and waiting for I/O); None where there is no such file."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]  # user … steal
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


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
