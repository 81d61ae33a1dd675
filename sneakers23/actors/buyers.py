"""Simulated shoppers for the mock drops: a pool of actors spread over the cluster's nodes, each
buying through the real purchase path with many threads at once."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import ray

from sneakers23.errors import DatabaseUnavailable
from sneakers23.jobs.report import Attempt
from sneakers23.settings import Settings

UNAVAILABLE = "unavailable"
RETRY_AFTER_S = 1.0  # when the store does not say how long to wait
RETRY_FOR_S = 60.0  # a buyer gives up on an unavailable store after this long


@ray.remote(num_cpus=0, enable_task_events=False)
class Buyers:
    def __init__(self, settings: Settings, threads: int, via: str, urls: list[str]):
        from sneakers23.cluster import RayReplication
        from sneakers23.inventory import Inventory

        self._via = via
        self._urls = urls
        self._pool = ThreadPoolExecutor(max_workers=threads)
        if via == "api":
            replication = RayReplication(wait=False, database_url=settings.database_url)
            self._inventory = Inventory(settings, replication=replication)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def buy(self, purchases: list[tuple[int, int]]) -> list[Attempt]:
        """Each (buyer number, item id) is a new shopper trying to buy one pair, until it has an
        answer: an unavailable store (503, or an answer lost on the way) is asked again, after the
        pause it asks for, with the same idempotency key, so a retry never buys a second pair."""
        return list(self._pool.map(lambda p: self._one(*p), purchases))

    def _one(self, number: int, item_id: int) -> Attempt:
        started = time.perf_counter()
        deadline = time.monotonic() + RETRY_FOR_S
        key = uuid.uuid4().hex  # one purchase: the same key on every try
        shopper, retries = None, 0
        try:
            if self._via == "api":
                shopper = _ApiShopper(self._inventory, f"stampede-{key}")
            else:
                shopper = _HttpShopper(self._urls[number % len(self._urls)])  # every node's store in turn
            while True:
                outcome, wait_s = shopper.buy(item_id, key)
                if outcome != UNAVAILABLE or time.monotonic() + wait_s > deadline:
                    break
                retries += 1
                time.sleep(wait_s)
        except Exception:
            outcome = "error"
        finally:
            if shopper is not None:
                shopper.close()
        if outcome == UNAVAILABLE:
            outcome = "error"  # no answer in time: whether it sold is for the database to say
        return Attempt(item_id, outcome, (time.perf_counter() - started) * 1000, time.time(), retries)


class _ApiShopper:
    """A shopper buying through the inventory API, as the store's pages do."""

    def __init__(self, inventory, shopper_id: str):
        self._inventory = inventory
        self._shopper_id = shopper_id

    def buy(self, item_id: int, key: str) -> tuple[str, float]:
        try:
            result = self._inventory.purchase(self._shopper_id, [item_id], key)
        except DatabaseUnavailable:
            return UNAVAILABLE, RETRY_AFTER_S
        return ("sold" if result.ok else str(result.refusal)), 0.0

    def close(self) -> None:
        pass


class _HttpShopper:
    """One shopper's browser: the store page first (for the shopper cookie), then the purchase."""

    def __init__(self, url: str):
        import httpx

        self._client = httpx.Client(base_url=url, timeout=30)
        self._has_cookie = False

    def buy(self, item_id: int, key: str) -> tuple[str, float]:
        import httpx

        try:
            if not self._has_cookie:
                page = self._client.get("/")
                if page.status_code == 503:
                    return UNAVAILABLE, _retry_after(page)
                page.raise_for_status()
                self._has_cookie = True
            response = self._client.post(f"/api/items/{item_id}/purchase", headers={"Idempotency-Key": key})
        except httpx.TransportError:  # the answer may be lost after a sale: ask again, same key
            return UNAVAILABLE, RETRY_AFTER_S
        if response.status_code == 200:
            return "sold", 0.0
        if response.status_code == 503:
            return UNAVAILABLE, _retry_after(response)
        if response.status_code in (403, 404, 409, 422):
            return response.json()["error"], 0.0
        return "error", 0.0

    def close(self) -> None:
        self._client.close()


def _retry_after(response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", RETRY_AFTER_S)), RETRY_FOR_S)
    except ValueError:
        return RETRY_AFTER_S
