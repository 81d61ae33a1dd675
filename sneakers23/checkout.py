"""Checkout: a shopper buys the cart that their checkout page showed (domain/checkout.py has the
rules). The one place that runs it: the page replicas' `POST /checkout` only reads the form and
shows the outcome.

1. Refused from memory when the sizes cannot be bought (an empty cart, a size sold out or not on
   sale): no actor, no database.
2. A form that is not the cart as it is (this node's copy, else the database's: the copy may lag)
   is stale: "Order Complete!" again when this cart was bought already, else the cart as it now is.
3. Bought through the drop engine with the key of the cart's version, so a double-click, a retry or
   a second tab sells it once; then the bought sizes leave the cart.

Errors of the store (SalesBusy, SalesUnavailable, DatabaseUnavailable) go to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sneakers23.domain.changes import Cart
from sneakers23.domain.checkout import (AlreadyBought, Bought, CheckoutRefusal, Outcome, Refused, checkout_key,
                                        checkout_refusal, is_the_cart)
from sneakers23.domain.carts import CartLine
from sneakers23.domain.purchases import BoughtPair, PurchaseResult

log = logging.getLogger(__name__)


class Memory(Protocol):
    """What checkout reads of this node's copy of the inventory (live.LiveCatalog)."""

    def cart(self, shopper_id: str) -> Cart: ...

    def lines(self, item_ids) -> list[CartLine]: ...


class Shop(Protocol):
    """What checkout asks of the inventory API (inventory.Inventory)."""

    async def cart_async(self, shopper_id: str) -> Cart: ...

    async def orders_async(self, shopper_id: str) -> list[BoughtPair]: ...

    async def purchase_async(self, shopper_id: str, item_ids: list[int],
                             idempotency_key: str | None = None) -> PurchaseResult: ...

    async def remove_from_cart_async(self, shopper_id: str, item_ids: list[int]): ...

    def refused_from_memory(self, what: str, reason: str) -> None: ...


class Checkout:
    def __init__(self, memory: Memory, shop: Shop):
        self._memory = memory
        self._shop = shop

    async def buy(self, shopper_id: str, version: int, item_ids: list[int]) -> Outcome:
        """Buy the cart a checkout form showed: its version and its sizes."""
        refusal = checkout_refusal(self._memory.lines(item_ids), item_ids)
        if refusal is not None:
            self._shop.refused_from_memory("checkout", refusal)
            return Refused(refusal)
        stale = await self._stale(shopper_id, version, item_ids)
        if stale is not None:
            return stale
        # Shielded: a shopper who goes away mid-checkout still has the cart cleared of what sold.
        result = await asyncio.shield(self._buy(shopper_id, sorted(set(item_ids)), version))
        return Bought(result) if result.ok else Refused(CheckoutRefusal.FAILED, detail=result.message)

    async def _stale(self, shopper_id: str, version: int, item_ids: list[int]) -> Outcome | None:
        """None when the form is the cart as it is; otherwise what to show instead."""
        if is_the_cart(self._memory.cart(shopper_id), version, item_ids):
            return None
        cart = await self._shop.cart_async(shopper_id)
        if is_the_cart(cart, version, item_ids):
            return None
        key = checkout_key(version)
        bought = [pair.item_id for pair in await self._shop.orders_async(shopper_id) if pair.idempotency_key == key]
        if bought:
            return AlreadyBought(bought)
        return Refused(CheckoutRefusal.CHANGED, cart)

    async def _buy(self, shopper_id: str, item_ids: list[int], version: int) -> PurchaseResult:
        result = await self._shop.purchase_async(shopper_id, item_ids, checkout_key(version))
        if result.ok:
            # The sale is committed: a cart that cannot be cleared now only shows the bought sizes
            # until the shopper removes them (checking out again replays the same order).
            try:
                await self._shop.remove_from_cart_async(shopper_id, item_ids)
            except Exception as error:  # (the sale stands: the page says so)
                log.warning("a bought cart could not be cleared: %s", error)
        return result
