"""What the inventory's services are given from outside (sneakers23.assembly puts them in)."""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

from sneakers23.domain.accounts import Delivery, Letter
from sneakers23.domain.changes import Change
from sneakers23.domain.purchases import PurchaseResult


class Replication(Protocol):
    """Where committed changes go next: the node caches (see sneakers23.cluster.RayReplication)."""

    def publish(self, changes: Iterable[Change]) -> None: ...


class Sales(Protocol):
    """Who sells a product's sizes when a store runs: its sales actor, which admits purchases in
    memory and commits them in groups (see sneakers23.actors.sales.RaySales)."""

    def product_for(self, item_ids: list[int]) -> int | None: ...

    def purchase(self, product_id: int, shopper_id: str, item_ids: list[int], key: str | None) -> PurchaseResult: ...

    async def purchase_async(self, product_id: int, shopper_id: str, item_ids: list[int],
                             key: str | None) -> PurchaseResult: ...


class Activity(Protocol):
    """Where the shop's sales and refusals are counted as they happen, for the admin dashboard and
    ops' metrics (see sneakers23.actors.activity.RayActivity). The database stays the record."""

    def sold(self, pairs: int) -> None: ...

    def refused(self, reason: str, count: int = 1) -> None: ...


class Mail(Protocol):
    """Where letters to shoppers go: posted, and sent off the caller's path (see sneakers23.mail.Postbox)."""

    def post(self, letter: Letter, on_done: Callable[[Delivery], None] | None = None) -> bool:
        """False: dropped (no room); `on_done(delivery)`, when given, is called once the letter is
        sent, or given up on (refused for good, or its server unreached)."""
        ...

    def room(self) -> int:
        """How many more letters it takes now."""
        ...
