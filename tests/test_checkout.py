"""Checkout run against memory and the inventory (sneakers23/checkout.py), with both faked: in
milliseconds. tests/serve/test_checkout.py buys through a real store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from sneakers23.checkout import Checkout
from sneakers23.domain.changes import Cart
from sneakers23.domain.checkout import AlreadyBought, Bought, CheckoutRefusal, Refused, checkout_key
from sneakers23.domain.purchases import BoughtPair, PurchaseResult, Refusal, SoldUnit
from sneakers23.errors import SalesBusy
from tests.domain.test_carts import lines, shop
from tests.support.aio import run


class Memory:
    def __init__(self, cart: Cart):
        self.catalog = shop()  # sizes 1 and 3 on sale, 2 sold out, 14 not released
        self.held = cart

    def cart(self, shopper_id):
        return self.held

    def lines(self, item_ids):
        return lines(self.catalog, item_ids)


class Shop:
    def __init__(self, cart: Cart, orders=(), result: PurchaseResult | None = None):
        self.held, self.orders, self.result = cart, list(orders), result
        self.bought, self.removed, self.refused = [], [], []
        self.purchase_gate: asyncio.Event | None = None
        self.fail_removal = False

    async def cart_async(self, shopper_id):
        return self.held

    async def orders_async(self, shopper_id):
        return self.orders

    async def purchase_async(self, shopper_id, item_ids, idempotency_key=None):
        self.bought.append((item_ids, idempotency_key))
        if self.purchase_gate is not None:
            await self.purchase_gate.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result or PurchaseResult.sold(tuple(SoldUnit(9, i, 1, 5, 2) for i in item_ids))

    async def remove_from_cart_async(self, shopper_id, item_ids):
        if self.fail_removal:
            raise RuntimeError("the database went away")
        self.removed.append(item_ids)

    def refused_from_memory(self, what, reason):
        self.refused.append((what, reason))


CART = Cart("amy", 5, (3, 1))


def checkout(memory_cart=CART, **shop_args) -> tuple[Checkout, Shop]:
    the_shop = Shop(shop_args.pop("database_cart", memory_cart), **shop_args)
    return Checkout(Memory(memory_cart), the_shop), the_shop


def test_the_cart_the_form_showed_is_bought_with_its_versions_key_then_cleared():
    desk, the_shop = checkout()
    outcome = run(desk.buy("amy", 5, [3, 1]))
    assert isinstance(outcome, Bought) and outcome.item_ids == [1, 3]
    assert the_shop.bought == [([1, 3], checkout_key(5))], "in size order"
    assert the_shop.removed == [[1, 3]]


@pytest.mark.parametrize(("item_ids", "refusal"), [([], CheckoutRefusal.EMPTY), ([1, 2], CheckoutRefusal.OUT_OF_STOCK),
                                                   ([1, 14], CheckoutRefusal.UNRELEASED), ([1, 77], CheckoutRefusal.FAILED)])
def test_what_memory_shows_cannot_sell_is_refused_without_asking_anyone(item_ids, refusal):
    desk, the_shop = checkout()
    assert run(desk.buy("amy", 5, item_ids)) == Refused(refusal)
    assert the_shop.bought == [] and the_shop.refused == [("checkout", refusal)]


def test_a_form_that_only_this_nodes_lagging_memory_disagrees_with_is_bought():
    desk, the_shop = checkout(memory_cart=Cart("amy", 4, (3,)), database_cart=CART)
    assert isinstance(run(desk.buy("amy", 5, [1, 3])), Bought)


def test_a_form_of_a_cart_bought_already_shows_the_order_again():
    at = datetime(2026, 12, 2, tzinfo=timezone.utc)
    orders = [BoughtPair(7, 1, 1, checkout_key(5), at), BoughtPair(8, 3, 1, checkout_key(5), at),
              BoughtPair(2, 3, 1, "another", at)]
    emptied = Cart("amy", 6, ())
    desk, the_shop = checkout(memory_cart=emptied, database_cart=emptied, orders=orders)
    assert run(desk.buy("amy", 5, [1, 3])) == AlreadyBought([1, 3])
    assert the_shop.bought == []


def test_a_form_of_a_cart_changed_since_shows_the_cart_as_it_is():
    now = Cart("amy", 6, (1,))
    desk, the_shop = checkout(memory_cart=now, database_cart=now)
    assert run(desk.buy("amy", 5, [1, 3])) == Refused(CheckoutRefusal.CHANGED, now)
    assert the_shop.bought == []


def test_a_purchase_the_database_refuses_fails_and_says_why_and_the_cart_stays():
    desk, the_shop = checkout(result=PurchaseResult.refused(Refusal.SOLD_OUT, 3))
    outcome = run(desk.buy("amy", 5, [1, 3]))
    assert outcome == Refused(CheckoutRefusal.FAILED, detail="item 3 is sold out")
    assert the_shop.removed == []


def test_the_stores_errors_reach_the_caller():
    desk, _shop = checkout(result=SalesBusy("too many"))
    with pytest.raises(SalesBusy):
        run(desk.buy("amy", 5, [1, 3]))


def test_a_sale_stands_when_the_cart_cannot_be_cleared():
    desk, the_shop = checkout()
    the_shop.fail_removal = True
    assert isinstance(run(desk.buy("amy", 5, [1, 3])), Bought)


def test_a_shopper_who_goes_away_mid_checkout_still_has_the_cart_cleared():
    async def go_away():
        desk, the_shop = checkout()
        the_shop.purchase_gate = asyncio.Event()
        buying = asyncio.create_task(desk.buy("amy", 5, [1, 3]))
        while not the_shop.bought:
            await asyncio.sleep(0)
        buying.cancel()
        the_shop.purchase_gate.set()
        with pytest.raises(asyncio.CancelledError):
            await buying
        for _ in range(100):  # (the shielded purchase goes on by itself)
            if the_shop.removed:
                break
            await asyncio.sleep(0)
        return the_shop.removed

    assert run(go_away()) == [[1, 3]]
