"""The inventory: the one business API of the shop, for the web replicas, the actors, the jobs and
the CLI (each gets its own, put together in sneakers23.assembly).

It knows the shop's operations (complete products, release, purchase, sell, restock, seed), not the
web or the command line. Writes go to the database, which decides; nothing here decides from memory.

Reads have two places, by design:
- the database, through this API's reads (`complete_products`, `current_changes`, `audit`, …): the
  CLI, the jobs, and the node caches, which load and heal from it;
- memory: pages and channels read their node's live catalog (sneakers23.live), a copy of the node
  cache, and never the database, so that a drop's crowd costs the database nothing.
The one exception is the sales actors' ledger: it loads each product's sales (db.sales) to admit
purchases in memory, since it is the write side of purchases (this API's Sales port).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from sneakers23.db import admin, carts, queries, seeds
from sneakers23.db.engine import make_engine
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.carts import MAX_ITEMS_PER_CART, CartRefusal, CartRequest
from sneakers23.domain.changes import AvailabilityChanged, CartChanged, Change, ProductReleased, ReleaseScheduleChanged
from sneakers23.domain.levels import Level, level_for
from sneakers23.domain.purchases import BoughtPair, PurchaseResult, validate_purchase, validate_shopper
from sneakers23.domain.admin import ActionKind, AdminAction, AuditEntry, FailedLogin
from sneakers23.errors import AlreadyReleased, DatabaseUnavailable, NotFound, SalesBusy, Sneakers23Error
from sneakers23.group_commit import GroupCommit, one_by_one
from sneakers23.retries import again_if_deadlocked
from sneakers23.settings import Settings, get_settings


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


@dataclass(frozen=True, slots=True)
class StockAudit:
    """The database's own account of stock and sales, to check a drop against."""

    counts: dict[int, int]  # item -> pairs left
    orders: dict[int, int]  # item -> orders written
    most_pairs_per_size: int  # the most orders any shopper holds for one item
    most_pairs_per_product: int  # the most orders any shopper holds for one product


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


log = logging.getLogger(__name__)

EXPIRE_CARTS_PER_BATCH = 1_000

# The `…_async` operations run in threads of their own: a transaction mostly waits for the database
# (its commit for the disk), so more of them at once than asyncio's default few keep it busy.
DATABASE_THREADS = 32


class Inventory:
    def __init__(self, settings: Settings | None = None, replication: Replication | None = None,
                 sales: Sales | None = None, activity: Activity | None = None):
        self.settings = settings or get_settings()
        self.replication = replication
        self.sales = sales
        self.activity = activity
        self.engine: Engine = make_engine(self.settings.database_url)  # connects on first use
        self.database = Database(self.engine, self.settings.database_url, self._publish)
        self._threads: ThreadPoolExecutor | None = None
        self._carts: GroupCommit[CartRequest, CartChanged | CartRefusal] | None = None

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)
        self.engine.dispose()

    def _in_thread(self, function, *args):
        if self._threads is None:
            self._threads = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="sneakers23-database")
        return asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

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

    # --- writes ---

    def _publish(self, changes: Iterable[Change]) -> None:
        # (The unit of work calls it, after the commit: db/unit_of_work.py.)
        if self.replication is not None:
            self.replication.publish(changes)

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
        with self.database.transaction() as unit:
            change = queries.schedule_release(unit.connection, product_id, at)
            unit.publish([change])
        return change

    def release_due(self) -> list[ProductReleased]:
        """Release the products whose time has come (the release clock calls this)."""
        with self.database.reading() as connection:
            if not queries.release_is_due(connection):
                return []
        with self.database.transaction() as unit:
            changes = queries.release_due(unit.connection)
            unit.publish(changes)
        return changes

    def expire_carts(self, batch: int = EXPIRE_CARTS_PER_BATCH) -> list[CartChanged]:
        """Empty the carts left untouched for `cart_idle_days` (the release clock calls this now
        and then), a batch per transaction, each published after its commit: every cache and tab
        forgets them. A week's carts after a big drop are many: no statement names them all."""
        idle_before = datetime.now(timezone.utc) - timedelta(days=self.settings.cart_idle_days)
        emptied: list[CartChanged] = []
        while True:
            with self.database.transaction() as unit:
                these = carts.expire(unit.connection, idle_before, batch)
                unit.publish(these)
            emptied += these
            if len(these) < batch:
                return emptied

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
                result = queries.purchase(self.engine, shopper_id, item_ids, idempotency_key,
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
        return await self._in_thread(self.purchase, shopper_id, item_ids, idempotency_key)

    # --- carts (a cart holds sizes put aside; the checkout buys them through `purchase`) ---

    def cart(self, shopper_id: str) -> CartChanged:
        validate_shopper(shopper_id)
        with self.database.reading() as connection:
            return carts.cart(connection, shopper_id)

    def carts(self) -> list[CartChanged]:
        """Every shopper's cart (what a node cache holds besides the inventory)."""
        with self.database.reading() as connection:
            return carts.all_carts(connection)

    def add_to_cart(self, shopper_id: str, item_id: int) -> CartChanged | CartRefusal:
        """Put one pair of a size in the shopper's cart: the database checks that it exists, is on
        sale and in stock, is not in the cart or bought already, and keeps the shopper's pairs of
        the product (in the cart and bought) within the limit. Published after the commit, so that
        every tab of the shopper, on any node, shows it. (The sale decides for good: a purchase
        still being committed is not counted here, and the checkout refuses what passes the limit.)"""
        return _outcome(self.change_carts([CartRequest(shopper_id, add=item_id)])[0])

    def remove_from_cart(self, shopper_id: str, item_ids: list[int]) -> CartChanged:
        """Take sizes out of the cart (those not in it are ignored); the cart as it is after."""
        return _outcome(self.change_carts([CartRequest(shopper_id, remove=tuple(item_ids))])[0])

    def change_carts(self, requests: list[CartRequest]) -> list[CartChanged | CartRefusal | Exception]:
        """Several cart changes in one transaction, each one's outcome in order. A batch the
        database refuses as a whole (a size deleted under it) is tried again change by change,
        and then a change that fails has its error as its outcome."""
        for request in requests:
            _validate_cart_request(request)
        try:
            return self._change_carts_in_one(requests)
        except IntegrityError as error:
            if len(requests) == 1:
                return [error]
            log.warning("a batch of %d cart changes failed (%s): one by one", len(requests), error)
        return one_by_one(requests, lambda request: self._change_carts_in_one([request])[0],
                          fails_alone=(IntegrityError, Sneakers23Error))

    def _change_carts_in_one(self, requests: list[CartRequest]) -> list[CartChanged | CartRefusal]:
        with self.database.transaction() as unit:
            outcomes, changed = carts.change_carts(unit.connection, requests, self.settings.max_pairs_per_product)
            unit.publish(changed)  # each cart the batch changed, as it left it
        if self.activity is not None:
            for outcome in outcomes:
                if isinstance(outcome, CartRefusal):
                    self.activity.refused(f"cart:{outcome}")
        return outcomes

    async def add_to_cart_async(self, shopper_id: str, item_id: int) -> CartChanged | CartRefusal:
        """`add_to_cart`, for callers on an event loop: grouped with the other changes asked for
        while a batch commits (one transaction, one publish for them all)."""
        return await self._change_cart_async(CartRequest(shopper_id, add=item_id))

    async def remove_from_cart_async(self, shopper_id: str, item_ids: list[int]) -> CartChanged:
        return await self._change_cart_async(CartRequest(shopper_id, remove=tuple(item_ids)))

    async def _change_cart_async(self, request: CartRequest):
        _validate_cart_request(request)  # (here too: a malformed change fails alone, not its batch)
        if self._carts is None:
            self._carts = GroupCommit(
                lambda batch: self._in_thread(self.change_carts, batch), max_batch=MAX_CART_CHANGES_PER_BATCH,
                cut_short=lambda: DatabaseUnavailable("the cart change was cut short: try again"))
        return await self._carts.ask(request)

    async def cart_async(self, shopper_id: str) -> CartChanged:
        return await self._in_thread(self.cart, shopper_id)

    async def orders_async(self, shopper_id: str) -> list[BoughtPair]:
        return await self._in_thread(self.orders, shopper_id)

    def orders(self, shopper_id: str) -> list[BoughtPair]:
        """The pairs the shopper bought, newest first."""
        validate_shopper(shopper_id)
        with self.database.reading() as connection:
            return queries.shopper_orders(connection, shopper_id)

    def restock(self, item_id: int, count: int) -> AvailabilityChanged:
        """Add pairs to a size (a late delivery, returns): committed, then published, so the
        caches, the pages and the product's sales actor learn it as they learn a sale."""
        if count < 1:
            raise ValueError("a restock adds at least 1 pair")
        with self.database.transaction() as unit:
            change = queries.restock(unit.connection, item_id, count)
            unit.publish([change])
        return change

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

    # --- the admin desk (every action is written to the audit, however it went) ---

    def act(self, who: str, action: AdminAction, client: str = "") -> AuditEntry:
        """Carry out a staff action through this API (release now, schedule or cancel a release,
        restock), then write it to the audit with its result. A refusal (an unknown product, a
        product already out) is a result, not an error; only a database that is away raises."""
        try:
            ok, result = True, self._carry_out(action)
        except (ValueError, NotFound, AlreadyReleased) as error:
            ok, result = False, str(error)
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, action.kind, action.target, ok, result, client)

    def _carry_out(self, action: AdminAction) -> str:
        if action.kind is ActionKind.RELEASE:
            outcome = self.release(action.product_id)
            return "released" if outcome.newly_released else "it was already released"
        if action.kind is ActionKind.SCHEDULE:
            self.schedule_release(action.product_id, action.at)
            return f"goes on sale at {action.at.isoformat()}"
        if action.kind is ActionKind.CANCEL_SCHEDULE:
            self.schedule_release(action.product_id, None)
            return "no release time any more"
        change = self.restock(action.item_id, action.count)
        return f"{change.available_count} pair(s) available"

    def record_login(self, who: str, ok: bool, result: str, client: str = "") -> AuditEntry:
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.LOGIN, "admin", ok, result, client)

    def record_logout(self, who: str, session_id: str, client: str = "") -> AuditEntry:
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.LOGOUT, f"session {session_id}", True, "logged out", client)

    def sessions_logged_out(self, since: datetime) -> set[str]:
        """The ids of the admin sessions logged out since then (they stay revoked)."""
        with self.database.reading() as connection:
            return {target.removeprefix("session ") for target in admin.logged_out_since(connection, since)}

    def failed_logins(self, window: timedelta) -> list[FailedLogin]:
        """Logins failed within the window (since the last unlock)."""
        with self.database.reading() as connection:
            return admin.failed_logins(connection, window)

    def record_lock(self, failures: int) -> AuditEntry:
        """The throttle's last resort began: every login waits (failures from everywhere)."""
        with self.database.transaction() as unit:
            return admin.record(unit.connection, "throttle", ActionKind.LOCK_LOGINS, "admin", True,
                                f"{failures} failed logins within a minute, from everywhere: every login waits", "")

    def unlock_logins(self, who: str) -> AuditEntry:
        """Let logins through again at once, past the throttle (after an attack has stopped)."""
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.UNLOCK_LOGINS, "admin", True, "logins unlocked", "")

    def admin_audit(self, limit: int = 50) -> list[AuditEntry]:
        """The newest entries of the audit first."""
        with self.database.reading() as connection:
            return admin.recent(connection, limit)

    def seed(self, random_seed: int | None = None, reset: bool = False) -> int:
        def once() -> int:
            with self.engine.begin() as connection:
                return seeds.seed(connection, random_seed=random_seed, reset=reset)

        with self.database.errors():
            return again_if_deadlocked(once)

    def audit(self) -> StockAudit:
        with self.database.reading() as connection:
            return StockAudit(*queries.stock_audit(connection))

    def current_changes(self, carts_changed_since: datetime | None = None) -> list[Change]:
        """Every row's current state as a change: what a cache applies to catch up (anti-entropy).
        Of the carts, which grow with the shoppers, only those changed since the moment given."""
        with self.database.reading() as connection:
            return queries.current_changes(connection, carts_changed_since)

    def database_version(self) -> int:
        """The sum of every row's version (of the carts, those that hold something)."""
        return sum(self.database_versions())

    def database_versions(self) -> tuple[int, int]:
        """The sums of the versions of the products and sizes, and of the carts that hold
        something: the figures caches are compared with."""
        with self.database.reading() as connection:
            return queries.version_totals(connection)

    def is_seeded(self) -> bool:
        with self.database.reading() as connection:
            return queries.count_products(connection) > 0

    def upgrade_schema(self) -> None:
        from sneakers23.db import migrate

        with self.database.errors():
            migrate.upgrade(self.engine)


MAX_CART_CHANGES_PER_BATCH = 500


def _validate_cart_request(request: CartRequest) -> None:
    validate_shopper(request.shopper_id)
    for item_id in ([request.add] if request.add is not None else []) + list(request.remove):
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise ValueError(f"item ids are whole numbers, not {item_id!r}")
    if request.add is None and not 0 < len(request.remove) <= MAX_ITEMS_PER_CART:
        raise ValueError(f"a change adds a size or takes out 1 to {MAX_ITEMS_PER_CART}")


def _outcome(outcome):
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
