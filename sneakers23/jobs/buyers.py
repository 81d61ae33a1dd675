"""Simulated shoppers for the mock drops: a pool of actors spread over the cluster's nodes.

Each actor runs its shoppers as coroutines on one event loop, so that the load generator costs far
less than the store it loads (its ceiling against a trivial endpoint is measured in
bench/drop_engine.py). Through HTTP, a shopper has opened the store page before the drop (that is
where its cookie comes from) and presses "buy" when it starts, as on a real drop day.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Awaitable, Callable, TypeVar

import ray

from sneakers23.errors import DatabaseUnavailable, SalesBusy, SalesUnavailable
from sneakers23.jobs.report import Attempt
from sneakers23.serve.shoppers import COOKIE, FORM_TOKEN_HEADER, form_token_in
from sneakers23.settings import Settings

UNAVAILABLE = "unavailable"
RETRY_AFTER_S = 1.0  # when the store does not say how long to wait
RETRY_FOR_S = 60.0  # a buyer gives up on an unavailable store after this long

T = TypeVar("T")


@ray.remote(num_cpus=0, enable_task_events=False, max_concurrency=1_000)
class Buyers:
    def __init__(self, settings: Settings, concurrency: int, via: str, urls: list[str], through_sales: bool = True):
        self._settings = settings
        self._via = via
        self._urls = urls
        self._concurrency = concurrency
        self._cookies: dict[int, tuple[str, str]] = {}  # buyer number -> its shopper cookie and form token (HTTP)
        self._session = None
        self._inventory = None
        self._limit: asyncio.Semaphore | None = None  # purchases (or page visits) under way here, over all calls
        self._through_sales = through_sales

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def open_store(self, numbers: list[int]) -> int:
        """Before the drop: each of these shoppers opens the store page, which gives it its cookie.
        Returns how many did."""
        if self._via != "http":
            return 0
        session = self._http()

        async def visit(number: int) -> None:
            async with self._under_way():
                for _try in range(int(RETRY_FOR_S / RETRY_AFTER_S)):
                    try:
                        async with session.get(self._url(number) + "/") as page:
                            text = await page.text()
                            token = form_token_in(text)
                            if page.status == 200 and COOKIE in page.cookies and token:
                                self._cookies[number] = (page.cookies[COOKIE].value, token)
                                return
                    except OSError:
                        pass
                    await asyncio.sleep(RETRY_AFTER_S)

        await asyncio.gather(*(visit(number) for number in numbers))
        return sum(number in self._cookies for number in numbers)

    async def buy(self, purchases: list[tuple[int, int]]) -> list[Attempt]:
        """Each (buyer number, item id) is a shopper trying to buy one pair, until it has an answer:
        an unavailable store (503 or 429, or an answer lost on the way) is asked again, after the pause it
        asks for, with the same idempotency key, so that a retry never buys a second pair."""
        async def one(number: int, item_id: int) -> Attempt:
            async with self._under_way():
                return await self._one(number, item_id)

        return list(await asyncio.gather(*(one(number, item_id) for number, item_id in purchases)))

    async def _one(self, number: int, item_id: int) -> Attempt:
        started = time.perf_counter()
        key = uuid.uuid4().hex  # one purchase: the same key on every try

        async def buy() -> tuple[str, float | None]:
            if self._via == "api":
                outcome, wait_s = await self._buy_through_api(f"stampede-{key}", item_id, key)
            else:
                outcome, wait_s = await self._buy_through_http(number, item_id, key)
            return outcome, wait_s if outcome == UNAVAILABLE else None

        retries = 0
        try:
            outcome, retries = await asked_until_answered(buy)
        except Exception:
            outcome = "error"
        if outcome == UNAVAILABLE:
            outcome = "error"  # no answer in time: whether it sold is for the database to say
        return Attempt(item_id, outcome, (time.perf_counter() - started) * 1000, time.time(), retries)

    async def _buy_through_api(self, shopper_id: str, item_id: int, key: str) -> tuple[str, float]:
        try:
            result = await self._api().purchase_async(shopper_id, [item_id], key)
        except (DatabaseUnavailable, SalesBusy, SalesUnavailable):
            return UNAVAILABLE, RETRY_AFTER_S
        return ("sold" if result.ok else str(result.refusal)), 0.0

    async def _buy_through_http(self, number: int, item_id: int, key: str) -> tuple[str, float]:
        if number not in self._cookies:  # the page did not open before the drop: the buyer cannot buy
            return "error", 0.0
        cookie, token = self._cookies[number]
        return await purchase_over_http(self._http(), self._url(number), f"{COOKIE}={cookie}", token, item_id, key)

    def _under_way(self) -> asyncio.Semaphore:
        if self._limit is None:  # (made on the actor's event loop)
            self._limit = asyncio.Semaphore(self._concurrency)
        return self._limit

    def _url(self, number: int) -> str:
        return self._urls[number % len(self._urls)].rstrip("/")  # every node's store in turn

    def _http(self):
        import aiohttp

        if self._session is None:  # made on the actor's event loop; each shopper sends its own cookie
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency), cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    def _api(self):
        if self._inventory is None:
            from sneakers23 import assembly

            self._inventory = assembly.cluster_inventory(self._settings, through_sales=self._through_sales)
        return self._inventory


async def asked_until_answered(ask: Callable[[], Awaitable[tuple[T, float | None]]],
                               within_s: float = RETRY_FOR_S) -> tuple[T, int]:
    """Ask until the store answers: `ask` returns (what it said, the pause before asking again, or
    None once answered). Gives up with the last thing said when the next pause would end past
    `within_s`. Returns it with how many times it asked again."""
    deadline = time.monotonic() + within_s
    retries = 0
    while True:
        said, pause_s = await ask()
        if pause_s is None or time.monotonic() + pause_s > deadline:
            return said, retries
        retries += 1
        await asyncio.sleep(pause_s)


async def purchase_over_http(session, url: str, cookies: str, form_token: str, item_id: int,
                             key: str) -> tuple[str, float]:
    """One try of a purchase through the store's endpoint, as a page's buy button makes it (with
    the page's cookies, its Cookie header): ("sold" or the refusal's reason, 0), or (UNAVAILABLE,
    the pause to make before trying again with the same key)."""
    import aiohttp

    headers = {"Cookie": cookies, FORM_TOKEN_HEADER: form_token, "Idempotency-Key": key}
    try:
        async with session.post(f"{url}/api/items/{item_id}/purchase", headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status == 200:
                return "sold", 0.0
            if response.status in (429, 503):  # too many from this address, or the store is busy
                return UNAVAILABLE, retry_after(response.headers.get("Retry-After"))
            if response.status in (403, 404, 409, 422):
                return body["error"], 0.0
            return "error", 0.0
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):  # the answer may be lost after a sale
        return UNAVAILABLE, RETRY_AFTER_S


def retry_after(value: str | None) -> float:
    try:
        return min(float(value if value is not None else RETRY_AFTER_S), RETRY_FOR_S)
    except ValueError:
        return RETRY_AFTER_S
