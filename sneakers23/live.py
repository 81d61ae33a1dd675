"""The live catalog: this node's inventory (and the shoppers' carts), copied into the process that
serves shoppers.

A web replica renders every page and answers every join from this copy, with no call to anyone.
It follows the node cache from a cursor, so it gets each change once and in order, and tells its
listeners what shoppers must be told. When the cache restarts, the copy starts again from a
snapshot and the listeners are told the differences, so no page stays stale.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from sneakers23.actors.node_cache import Snapshot, follow_node_cache
from sneakers23.domain.carts import CartLine, lines_for
from sneakers23.domain.catalog import Catalog, Item, Product
from sneakers23.domain.changes import (AccountChanged, AvailabilityChanged, Cart, DrawFinished, InventoryChange,
                                       ProductChange, WaitingLine)
from sneakers23.domain.shopper_events import (CartUpdated, DrawOver, LineMoved, SessionsToCheck, ShopperEvent, cart_differences,
                                              differences, release_change, stock_change)
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

Listener = Callable[[list[ShopperEvent]], None]
# Pages waiting for a shopper's own cart change, at most (past it, or a second for one shopper, a
# page shows the cart as this copy has it at once: no visitor holds many page slots for 2 s).
CART_WAITERS_MAX = 32


class LiveCatalog:
    def __init__(self, prepare: Callable[[], Awaitable[None]] | None = None):
        self._prepare = prepare  # once, before it first follows its node (sneakers23.assembly says what)
        self._catalog: Catalog | None = None
        self._listeners: list[Listener] = []
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.changes_seen = 0
        self.generation = 0  # grows whenever the products or their stock may have changed
        self._loaded = asyncio.Event()  # set by the first snapshot
        # The page waiting for a shopper's own cart change to reach this copy: shopper -> (version, future).
        self._cart_waiters: dict[str, tuple[int, asyncio.Future]] = {}

    # --- reads (from memory) ---

    @property
    def ready(self) -> bool:
        return self._catalog is not None

    def products(self) -> list[Product]:
        return self._catalog.products() if self._catalog else []

    def product(self, product_id: int) -> Product | None:
        return self._catalog.product(product_id) if self._catalog else None

    def item(self, item_id: int) -> Item | None:
        return self._catalog.item(item_id) if self._catalog else None

    def cart(self, shopper_id: str) -> Cart:
        held = self._catalog.cart(shopper_id) if self._catalog else None
        return held or Cart.new(shopper_id)

    def line(self, product_id: int) -> WaitingLine | None:
        """A queued drop's line, as its keeper last sent it."""
        return self._catalog.line(product_id) if self._catalog else None

    def cart_lines(self, cart: Cart) -> list[CartLine]:
        return self.lines(cart.item_ids)

    def lines(self, item_ids) -> list[CartLine]:
        """Sizes as a cart, a checkout or an order shows them."""
        return lines_for(item_ids, self.item, self.product)

    async def cart_seen(self, shopper_id: str, version: int, timeout_s: float) -> Cart:
        """The shopper's cart once this copy has had its `version` (or a later one), or as it is
        after `timeout_s`. A page the shopper opens right after their own change (a size added, then
        the checkout) shows it, whichever node serves the page: the change reaches each node's copy
        a few milliseconds apart, and a page read before it would say the cart is empty."""
        if (self.cart(shopper_id).version >= version or self._catalog is None
                or shopper_id in self._cart_waiters or len(self._cart_waiters) >= CART_WAITERS_MAX):
            return self.cart(shopper_id)
        seen = asyncio.get_running_loop().create_future()
        self._cart_waiters[shopper_id] = (version, seen)
        try:
            await asyncio.wait_for(seen, timeout_s)
        except asyncio.TimeoutError:
            pass
        finally:
            del self._cart_waiters[shopper_id]
        return self.cart(shopper_id)

    def _cart_arrived(self, shopper_id: str, version: int | None) -> None:
        """Wakes the page waiting for this shopper's cart at `version` or before (None: at any)."""
        wanted, seen = self._cart_waiters[shopper_id]
        if (version is None or wanted <= version) and not seen.done():
            seen.set_result(None)

    # --- following ---

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        """Start following, on the running event loop."""
        if self._task is None:
            self._task = keep(self._tasks, asyncio.get_running_loop().create_task(self._follow_forever()))

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until the first snapshot is in; False when it did not come within the timeout."""
        if not self.ready:
            try:
                await asyncio.wait_for(self._loaded.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    async def _follow_forever(self) -> None:
        await follow_node_cache(self._install, self._apply, prepare=self._prepare)

    def _install(self, snapshot: Snapshot) -> None:
        again = self._catalog is not None  # (a restart of the node's cache, or a follower left behind)
        before = self.products()
        carts_before = self._catalog.carts() if self._catalog else []
        lines_before = set(self._catalog.lines()) if self._catalog else set()
        self._catalog = Catalog(snapshot.products, snapshot.carts, snapshot.lines)
        self.generation += 1
        self._loaded.set()
        for shopper_id in list(self._cart_waiters):  # (the node's latest: what a page waited for is in it, or never comes)
            self._cart_arrived(shopper_id, None)
        events: list[ShopperEvent] = [SessionsToCheck(None)]  # (an account's change may be among what it missed)
        if again:
            events += [*differences(before, snapshot.products), *cart_differences(carts_before, snapshot.carts),
                       *(LineMoved(line) for line in snapshot.lines if line not in lines_before)]
        self._tell(events)

    def _apply(self, changes) -> None:
        events: list[ShopperEvent] = []
        if any(isinstance(change, InventoryChange) for change in changes):
            self.generation += 1  # (pages and join replies are rendered again; carts are not in them)
        for change in changes:
            self.changes_seen += 1
            if isinstance(change, ProductChange):
                before = self._catalog.product(change.product_id)
                if self._catalog.apply(change) and (event := release_change(before, self._catalog.product(change.product_id))):
                    events.append(event)
            elif isinstance(change, AvailabilityChanged):
                before = self._catalog.item(change.item_id)
                if self._catalog.apply(change) and (event := stock_change(before, self._catalog.item(change.item_id))):
                    events.append(event)
            elif isinstance(change, Cart):
                if self._catalog.apply(change):
                    events.append(CartUpdated(change.shopper_id, change))
                if change.shopper_id in self._cart_waiters:
                    self._cart_arrived(change.shopper_id, change.version)
            elif isinstance(change, WaitingLine):
                if self._catalog.apply(change):
                    events.append(LineMoved(change))
            elif isinstance(change, AccountChanged):
                events.append(SessionsToCheck(change.account_id))
            elif isinstance(change, DrawFinished):
                events.append(DrawOver(change.product_id, change.entries))
        self._tell(events)

    def _tell(self, events: list[ShopperEvent]) -> None:
        if not events:
            return
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("a live catalog listener failed")
