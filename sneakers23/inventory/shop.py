"""The shop: the catalog as the database has it, releases, purchases, restocks and orders."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sneakers23.db import queries
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.changes import AvailabilityChanged, ProductReleased, ReleaseScheduleChanged
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import SEED_BYTES
from sneakers23.domain.levels import Level, level_for
from sneakers23.domain.purchases import BoughtPair, PurchaseResult, validate_purchase, validate_shopper
from sneakers23.errors import NotFound, SalesBusy
from sneakers23.inventory.ports import Activity, Sales
from sneakers23.settings import Settings


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    change: ProductReleased
    newly_released: bool  # False when the product was already out: nothing changed


@dataclass(frozen=True, slots=True)
class SellReport:
    """What `sell` did: pairs sold one by one, each to its own synthetic shopper."""

    item: Item
    requested: int
    sold: int
    available_count: int | None  # right after the last pair sold; None when none was
    refused: PurchaseResult | None  # why it stopped early, if it did

    @property
    def level(self) -> Level | None:
        return None if self.available_count is None else level_for(self.available_count)


class Shop:
    def __init__(self, database: Database, settings: Settings, sales: Sales | None = None,
                 activity: Activity | None = None):
        self.database = database
        self.settings = settings
        self.sales = sales
        self.activity = activity

    # --- reads ---

    def complete_products(self) -> list[Product]:
        with self.database.reading() as connection:
            return queries.load_products(connection)

    def item(self, item_id: int) -> Item:
        for product in self.complete_products():
            for item in product.items:
                if item.id == item_id:
                    return item
        raise NotFound(f"there is no item {item_id}")

    def orders(self, shopper_id: str) -> list[BoughtPair]:
        """The pairs the shopper bought, newest first."""
        validate_shopper(shopper_id)
        with self.database.reading() as connection:
            return queries.shopper_orders(connection, shopper_id)

    async def orders_async(self, shopper_id: str) -> list[BoughtPair]:
        return await self.database.in_thread(self.orders, shopper_id)

    # --- counting what shoppers get ---

    def refused_from_memory(self, what: str, reason: str) -> None:
        """Count a refusal decided from memory, before this API was called (a size shown sold out
        on a page, a cart's add of a size not on sale): `what` was refused, and why."""
        if self.activity is not None:
            self.activity.refused(f"{what}:{reason}")

    def _counted(self, result: PurchaseResult) -> PurchaseResult:
        if self.activity is not None and not result.replayed:
            if result.ok:
                self.activity.sold(len(result.units))
            else:
                self.activity.refused(f"purchase:{result.refusal}")
        return result

    # --- releases ---

    def release(self, product_id: int) -> ReleaseOutcome:
        with self.database.transaction() as unit:
            change, newly = queries.release(unit.connection, product_id)
            if newly:
                unit.publish([change])
        return ReleaseOutcome(change, newly)

    def schedule_release(self, product_id: int, at: datetime | None) -> ReleaseScheduleChanged:
        """Have the product go on sale by itself at `at` (UTC-aware, in the future); None cancels.

        The release clock (actors/release_clock.py) releases it then, once for the whole cluster."""
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("a release time needs a time zone")
            if at <= datetime.now(timezone.utc):
                raise ValueError(f"the release time {at.isoformat()} is in the past")
            at = at.astimezone(timezone.utc)  # (SQLite keeps the wall time: every time here is UTC)
        with self.database.transaction() as unit:
            change = queries.schedule_release(unit.connection, product_id, at)
            unit.publish([change])
        return change

    def require_sign_in(self, product_id: int, required: bool = True) -> ProductReleased | ReleaseScheduleChanged:
        """Sell the product only to signed-in shoppers whose address is verified (or, False, to
        anyone again): each such shopper is one account, so the pair limit counts per person.
        Published, so every cache and sales actor refuses the others from memory."""
        with self.database.transaction() as unit:
            change = queries.require_sign_in(unit.connection, product_id, required)
            unit.publish([change])
        return change

    def set_drop_mode(self, product_id: int, mode: DropMode) -> ProductReleased | ReleaseScheduleChanged:
        """How the product's pairs go to shoppers at its release (domain/drops.py), set before it.
        A queue or a draw sells to signed-in shoppers only, and says so to every cache."""
        seed = secrets.token_bytes(SEED_BYTES)  # (a draw's or a queue's: its commitment is published from now on)
        with self.database.transaction() as unit:
            change = queries.set_drop_mode(unit.connection, product_id, mode, seed)
            unit.publish([change])
        return change

    def on_sale_soon(self, within_s: float) -> list[int]:
        """The products on sale, and those released within `within_s` seconds (the release clock
        starts their sales actors ahead of their first purchase)."""
        with self.database.reading() as connection:
            return queries.on_sale_soon(connection, timedelta(seconds=within_s))

    def release_due(self) -> list[ProductReleased]:
        """Release the products whose time has come. The release clock calls this once
        `next_release_in_s` says one is due (that cheap read keeps the writer lock for when there
        is something to release)."""
        with self.database.transaction() as unit:
            changes = queries.release_due(unit.connection)
            unit.publish(changes)
        return changes

    def next_release_in_s(self) -> float | None:
        """Seconds until the next scheduled release (0 or less: it is due); None when none is
        scheduled."""
        with self.database.reading() as connection:
            at = queries.next_release_at(connection)
        return None if at is None else (at - datetime.now(timezone.utc)).total_seconds()

    # --- purchases ---

    def purchase(self, shopper_id: str, item_ids: list[int], idempotency_key: str | None = None) -> PurchaseResult:
        """Sell one pair of each item to the shopper, all or nothing. Where a store runs, the
        product's sales actor sells them (refusing from memory, committing in groups); otherwise,
        and for a purchase of several products' sizes, one transaction here (db.queries.purchase)."""
        item_ids = list(item_ids)
        validate_purchase(shopper_id, item_ids, idempotency_key)
        if self.sales is not None and (product_id := self.sales.product_for(item_ids)) is not None:
            return self._counted(self.sales.purchase(product_id, shopper_id, item_ids, idempotency_key))
        try:
            with self.database.errors():
                result = queries.purchase(self.database.engine, shopper_id, item_ids, idempotency_key,
                                          self.settings.max_pairs_per_product)
        except SalesBusy:  # (what it read kept moving under it: rare, and counted as a refusal)
            self.refused_from_memory("purchase", "busy")
            raise
        if result.ok and not result.replayed:
            self.database.published(result.changes)
        return self._counted(result)

    async def purchase_async(self, shopper_id: str, item_ids: list[int],
                             idempotency_key: str | None = None) -> PurchaseResult:
        """`purchase`, for callers on an event loop (the web replicas)."""
        item_ids = list(item_ids)
        validate_purchase(shopper_id, item_ids, idempotency_key)
        if self.sales is not None and (product_id := self.sales.product_for(item_ids)) is not None:
            try:
                return self._counted(await self.sales.purchase_async(product_id, shopper_id, item_ids,
                                                                     idempotency_key))
            except SalesBusy:  # (turned away before the database: counted as a refusal)
                self.refused_from_memory("purchase", "busy")
                raise
        return await self.database.in_thread(self.purchase, shopper_id, item_ids, idempotency_key)

    def sell(self, item_id: int, count: int = 1, on_sold: Callable[[PurchaseResult], None] | None = None) -> SellReport:
        """Sell up to `count` pairs of an item through the purchase path, one synthetic shopper each.

        Stops at the first refusal (sold out, not released) and says why.
        """
        if count < 1:
            raise ValueError("the count of pairs to sell is at least 1")
        item = self.item(item_id)
        sold, available_count = 0, None
        for _ in range(count):
            result = self.purchase(f"mock-{uuid.uuid4().hex}", [item_id])
            if not result.ok:
                return SellReport(item, count, sold, available_count, result)
            sold += 1
            available_count = result.units[0].available_count
            if on_sold is not None:
                on_sold(result)
        return SellReport(item, count, sold, available_count, None)

    # --- restocks ---

    def restock(self, item_id: int, count: int) -> AvailabilityChanged:
        """Add pairs to a size (a late delivery, returns): committed, then published, so the
        caches, the pages and the product's sales actor learn it as they learn a sale."""
        if count < 1:
            raise ValueError("a restock adds at least 1 pair")
        with self.database.transaction() as unit:
            change = queries.restock(unit.connection, item_id, count)
            unit.publish([change])
        return change
