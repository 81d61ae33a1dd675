"""Carts: the sizes shoppers put aside (the checkout buys them through the shop's purchase), their
changes grouped into one transaction while a batch commits, and the emptying of idle carts."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError

from sneakers23.db import carts
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.carts import MAX_ITEMS_PER_CART, CartRefusal, CartRequest, merge_requests
from sneakers23.domain.changes import Cart
from sneakers23.domain.purchases import validate_shopper
from sneakers23.errors import DatabaseUnavailable, Sneakers23Error
from sneakers23.group_commit import GroupCommit, one_by_one
from sneakers23.inventory.ports import Activity
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

EXPIRE_CARTS_PER_BATCH = 1_000
MAX_CART_CHANGES_PER_BATCH = 500


class Carts:
    def __init__(self, database: Database, settings: Settings, activity: Activity | None = None):
        self.database = database
        self.settings = settings
        self.activity = activity
        self._changes: GroupCommit[CartRequest, Cart | CartRefusal] | None = None

    def cart(self, shopper_id: str) -> Cart:
        validate_shopper(shopper_id)
        with self.database.reading() as connection:
            return carts.cart(connection, shopper_id)

    async def cart_async(self, shopper_id: str) -> Cart:
        return await self.database.in_thread(self.cart, shopper_id)

    def all_carts(self) -> list[Cart]:
        """Every shopper's cart (what a node cache holds besides the inventory)."""
        with self.database.reading() as connection:
            return carts.all_carts(connection)

    def add_to_cart(self, shopper_id: str, item_id: int) -> Cart | CartRefusal:
        """Put one pair of a size in the shopper's cart: the database checks that it exists, is on
        sale and in stock, is not in the cart or bought already, and keeps the shopper's pairs of
        the product (in the cart and bought) within the limit. Published after the commit, so that
        every tab of the shopper, on any node, shows it. (The sale decides for good: a purchase
        still being committed is not counted here, and the checkout refuses what passes the limit.)"""
        return _outcome(self.change_carts([CartRequest(shopper_id, add=item_id)])[0])

    def remove_from_cart(self, shopper_id: str, item_ids: list[int]) -> Cart:
        """Take sizes out of the cart (those not in it are ignored); the cart as it is after."""
        return _outcome(self.change_carts([CartRequest(shopper_id, remove=tuple(item_ids))])[0])

    def merge_carts(self, from_shopper_id: str, into_shopper_id: str) -> Cart:
        """At sign-in, the cart filled anonymously joins the account's (domain/carts.merge_requests),
        in one transaction; the account's cart as it is after."""
        validate_shopper(into_shopper_id)
        requests = merge_requests(self.cart(from_shopper_id), into_shopper_id)
        if not requests:  # (most sign-ins: nothing was put aside before)
            return self.cart(into_shopper_id)
        merged = [outcome for outcome in self.change_carts(requests)[:-1] if isinstance(outcome, Cart)]
        return max(merged, key=lambda cart: cart.version) if merged else self.cart(into_shopper_id)

    async def merge_carts_async(self, from_shopper_id: str, into_shopper_id: str) -> Cart:
        return await self.database.in_thread(self.merge_carts, from_shopper_id, into_shopper_id)

    def change_carts(self, requests: list[CartRequest]) -> list[Cart | CartRefusal | Exception]:
        """Several cart changes in one transaction, each one's outcome in order. A batch the
        database refuses as a whole (a size deleted under it) is tried again change by change,
        and then a change that fails has its error as its outcome."""
        for request in requests:
            _validate(request)
        try:
            return self._change_in_one(requests)
        except IntegrityError as error:
            if len(requests) == 1:
                return [error]
            log.warning("a batch of %d cart changes failed (%s): one by one", len(requests), error)
        return one_by_one(requests, lambda request: self._change_in_one([request])[0],
                          fails_alone=(IntegrityError, Sneakers23Error))

    def _change_in_one(self, requests: list[CartRequest]) -> list[Cart | CartRefusal]:
        with self.database.transaction() as unit:
            outcomes, changed = carts.change_carts(unit.connection, requests, self.settings.max_pairs_per_product)
            unit.publish(changed)  # each cart the batch changed, as it left it
        if self.activity is not None:
            for outcome in outcomes:
                if isinstance(outcome, CartRefusal):
                    self.activity.refused(f"cart:{outcome}")
        return outcomes

    async def add_to_cart_async(self, shopper_id: str, item_id: int) -> Cart | CartRefusal:
        """`add_to_cart`, for callers on an event loop: grouped with the other changes asked for
        while a batch commits (one transaction, one publish for them all)."""
        return await self._change_async(CartRequest(shopper_id, add=item_id))

    async def remove_from_cart_async(self, shopper_id: str, item_ids: list[int]) -> Cart:
        return await self._change_async(CartRequest(shopper_id, remove=tuple(item_ids)))

    async def _change_async(self, request: CartRequest):
        _validate(request)  # (here too: a malformed change fails alone, not its batch)
        if self._changes is None:
            self._changes = GroupCommit(
                lambda batch: self.database.in_thread(self.change_carts, batch), max_batch=MAX_CART_CHANGES_PER_BATCH,
                cut_short=lambda: DatabaseUnavailable("the cart change was cut short: try again"))
        return await self._changes.ask(request)

    def expire_carts(self, batch: int = EXPIRE_CARTS_PER_BATCH) -> list[Cart]:
        """Empty the carts left untouched for `cart_idle_days` (the release clock calls this now
        and then), a batch per transaction, each published after its commit: every cache and tab
        forgets them. A week's carts after a big drop are many: no statement names them all."""
        idle_before = datetime.now(timezone.utc) - timedelta(days=self.settings.cart_idle_days)
        emptied: list[Cart] = []
        while True:
            with self.database.transaction() as unit:
                these = carts.expire(unit.connection, idle_before, batch)
                unit.publish(these)
            emptied += these
            if len(these) < batch:
                return emptied


def _validate(request: CartRequest) -> None:
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
