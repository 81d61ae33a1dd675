"""Simulated shoppers for the mock drops: a pool of actors spread over the cluster's nodes, each
buying through the real purchase path with many threads at once."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import ray

from sneakers23.jobs.report import Attempt
from sneakers23.settings import Settings


@ray.remote(num_cpus=0, enable_task_events=False)
class Buyers:
    def __init__(self, settings: Settings, threads: int, via: str, urls: list[str]):
        from sneakers23.cluster import RayReplication
        from sneakers23.inventory import Inventory

        self._via = via
        self._urls = urls
        self._pool = ThreadPoolExecutor(max_workers=threads)
        if via == "api":
            self._inventory = Inventory(settings, replication=RayReplication(wait=False))

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def buy(self, purchases: list[tuple[int, int]]) -> list[Attempt]:
        """Each (buyer number, item id) is a new shopper trying to buy one pair, once."""
        return list(self._pool.map(lambda p: self._one(*p), purchases))

    def _one(self, number: int, item_id: int) -> Attempt:
        started = time.perf_counter()
        try:
            outcome = self._api(item_id) if self._via == "api" else self._http(number, item_id)
        except Exception:
            outcome = "error"
        return Attempt(item_id, outcome, (time.perf_counter() - started) * 1000, time.time())

    def _api(self, item_id: int) -> str:
        result = self._inventory.purchase(f"stampede-{uuid.uuid4().hex}", [item_id])
        return "sold" if result.ok else str(result.refusal)

    def _http(self, number: int, item_id: int) -> str:
        import httpx

        url = self._urls[number % len(self._urls)]  # every node's store in turn
        with httpx.Client(base_url=url, timeout=30) as shopper:
            shopper.get("/").raise_for_status()  # a first visit: the shopper cookie
            response = shopper.post(f"/api/items/{item_id}/purchase")
        if response.status_code == 200:
            return "sold"
        if response.status_code in (403, 404, 409, 422):
            return response.json()["error"]
        return "error"
