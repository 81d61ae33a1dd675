"""Carts in the database, on SQLite and PostgreSQL: every add checked, one shopper's tabs in turn."""

from __future__ import annotations

import threading

from sneakers23.domain.carts import CartRefusal
from sneakers23.domain.changes import Cart
from sneakers23.inventory import Inventory
from harness import shop

SHOPPER = "a" * 64


def sizes_in_stock(inventory: Inventory, product_id: int, count: int) -> list[int]:
    product = next(p for p in inventory.complete_products() if p.id == product_id)
    return [item.id for item in product.items if item.available_count > 0][:count]


def test_adding_and_removing_moves_the_version_and_keeps_the_newest_first(inventory):
    inventory.release(1)
    first, second = sizes_in_stock(inventory, 1, 2)
    assert inventory.cart(SHOPPER) == Cart(SHOPPER, 0, ())
    assert inventory.add_to_cart(SHOPPER, first) == Cart(SHOPPER, 1, (first,))
    assert inventory.add_to_cart(SHOPPER, second) == Cart(SHOPPER, 2, (second, first))
    assert inventory.remove_from_cart(SHOPPER, [first]) == Cart(SHOPPER, 3, (second,))
    assert inventory.remove_from_cart(SHOPPER, [first]) == Cart(SHOPPER, 3, (second,))  # not in it: no change
    assert inventory.cart(SHOPPER) == Cart(SHOPPER, 3, (second,))
    assert inventory.all_carts() == [Cart(SHOPPER, 3, (second,))]


def test_every_add_is_checked_by_the_database_and_a_refusal_writes_nothing(inventory):
    first, second, third = sizes_in_stock(inventory, 1, 3)
    assert inventory.add_to_cart(SHOPPER, first) is CartRefusal.NOT_RELEASED
    inventory.release(1)
    assert inventory.add_to_cart(SHOPPER, 9999) is CartRefusal.NOT_FOUND
    shop.set_available(inventory, third, 0)
    assert inventory.add_to_cart(SHOPPER, third) is CartRefusal.SOLD_OUT
    assert inventory.add_to_cart(SHOPPER, first).version == 1
    assert inventory.add_to_cart(SHOPPER, first) is CartRefusal.DUPLICATE_ITEM
    assert inventory.add_to_cart(SHOPPER, second).version == 2
    shop.set_available(inventory, third, 5)
    assert inventory.add_to_cart(SHOPPER, third) is CartRefusal.LIMIT_REACHED  # a third pair of product 1
    assert inventory.cart(SHOPPER).version == 2  # refusals moved nothing


def test_pairs_already_bought_count_toward_the_limit(inventory):
    inventory.release(1)
    first, second, third = sizes_in_stock(inventory, 1, 3)
    assert inventory.purchase(SHOPPER, [first]).ok
    assert inventory.add_to_cart(SHOPPER, first) is CartRefusal.ALREADY_BOUGHT
    assert isinstance(inventory.add_to_cart(SHOPPER, second), Cart)
    assert inventory.add_to_cart(SHOPPER, third) is CartRefusal.LIMIT_REACHED


def test_two_tabs_adding_at_once_cannot_pass_the_limit_together(settings, inventory):
    inventory.release(1)
    sizes = sizes_in_stock(inventory, 1, 6)
    barrier = threading.Barrier(len(sizes))
    outcomes = []

    def add(item_id):
        tab = Inventory(settings)  # its own connection, as another node's replica has
        try:
            tab.complete_products()
            barrier.wait()
            outcomes.append(tab.add_to_cart(SHOPPER, item_id))
        finally:
            tab.close()

    threads = [threading.Thread(target=add, args=(item_id,)) for item_id in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    added = [outcome for outcome in outcomes if isinstance(outcome, Cart)]
    assert len(added) == settings.max_pairs_per_product
    assert sorted(outcome.version for outcome in added) == [1, 2]
    assert [o for o in outcomes if not isinstance(o, Cart)] == [CartRefusal.LIMIT_REACHED] * (len(sizes) - 2)
    assert len(inventory.cart(SHOPPER).item_ids) == 2


def test_carts_count_in_the_version_total_and_the_current_changes(inventory):
    inventory.release(1)
    before = inventory.database_version()
    (size,) = sizes_in_stock(inventory, 1, 1)
    inventory.add_to_cart(SHOPPER, size)
    inventory.add_to_cart("b" * 64, size)
    assert inventory.database_version() == before + 2
    carts = [change for change in inventory.current_changes() if isinstance(change, Cart)]
    assert sorted(carts, key=lambda c: c.shopper_id) == [Cart(SHOPPER, 1, (size,)), Cart("b" * 64, 1, (size,))]


def test_a_reseed_empties_the_carts_and_moves_their_versions_on(inventory):
    inventory.release(1)
    (size,) = sizes_in_stock(inventory, 1, 1)
    held = inventory.add_to_cart(SHOPPER, size)
    total = inventory.database_version()
    inventory.seed(reset=True)
    (emptied,) = inventory.all_carts()
    # Kept, empty and newer: a cache (and a tab) that held the cart takes the empty one as a change.
    assert emptied.shopper_id == SHOPPER and emptied.item_ids == () and emptied.version > held.version
    assert inventory.database_version() > total


def test_the_shoppers_orders_come_newest_first_with_their_purchase_key(inventory):
    inventory.release(1)
    first, second = sizes_in_stock(inventory, 1, 2)
    inventory.purchase(SHOPPER, [first], "k1")
    inventory.purchase(SHOPPER, [second], "k2")
    assert [(pair.item_id, pair.idempotency_key) for pair in inventory.orders(SHOPPER)] == [(second, "k2"), (first, "k1")]
    assert inventory.orders("c" * 64) == []


def test_a_batch_settles_many_shoppers_changes_in_order_in_one_transaction(inventory):
    from sneakers23.domain.carts import CartRequest

    inventory.release(1)
    first, second, third = sizes_in_stock(inventory, 1, 3)
    other = "b" * 64
    outcomes = inventory.change_carts([
        CartRequest(SHOPPER, add=first),
        CartRequest(other, add=first),
        CartRequest(SHOPPER, add=second),
        CartRequest(SHOPPER, add=third),  # a third pair in the same batch: refused
        CartRequest(other, remove=(first,)),
        CartRequest(other, add=first),  # out and in again: the version moves twice
        CartRequest(SHOPPER, remove=(9999,)),  # not in it: nothing changes
    ])
    assert outcomes == [
        Cart(SHOPPER, 1, (first,)),
        Cart(other, 1, (first,)),
        Cart(SHOPPER, 2, (second, first)),
        CartRefusal.LIMIT_REACHED,
        Cart(other, 2, ()),
        Cart(other, 3, (first,)),
        Cart(SHOPPER, 2, (second, first)),
    ]
    # The database holds what the last outcome of each says, newest first.
    assert inventory.cart(SHOPPER) == Cart(SHOPPER, 2, (second, first))
    assert inventory.cart(other) == Cart(other, 3, (first,))


def test_a_batch_of_refusals_writes_nothing(inventory):
    from sneakers23.domain.carts import CartRequest

    before = inventory.database_version()
    assert inventory.change_carts([CartRequest(SHOPPER, add=1), CartRequest(SHOPPER, remove=(2,))]) == [
        CartRefusal.NOT_RELEASED, Cart(SHOPPER, 0, ())]
    assert inventory.database_version() == before and inventory.cart(SHOPPER).item_ids == ()


def test_changes_asked_for_at_once_on_an_event_loop_commit_together(inventory):
    import asyncio

    from sqlalchemy import event

    inventory.release(1)
    sizes = sizes_in_stock(inventory, 1, 2)
    shoppers = [f"{n:064x}" for n in range(200)]
    commits = []
    event.listen(inventory.engine, "commit", lambda _connection: commits.append(1))

    async def everyone():
        return await asyncio.gather(*(inventory.add_to_cart_async(shopper, size) for shopper in shoppers for size in sizes))

    from tests.support.aio import run

    outcomes = run(everyone())
    assert all(isinstance(outcome, Cart) for outcome in outcomes)
    assert len(commits) <= 10  # 400 changes: the first alone, the rest in a few batches
    assert inventory.cart(shoppers[-1]).item_ids == tuple(reversed(sizes))


def test_the_carts_changed_since_a_moment_are_all_a_resync_reads_of_them(inventory):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    inventory.release(1)
    (size,) = sizes_in_stock(inventory, 1, 1)
    inventory.add_to_cart(SHOPPER, size)
    inventory.add_to_cart("b" * 64, size)
    with inventory.engine.begin() as connection:  # the first cart last changed an hour ago
        connection.execute(text("UPDATE carts SET updated_at = :then WHERE shopper_id = :who"),
                           {"then": datetime.now(timezone.utc) - timedelta(hours=1), "who": SHOPPER})
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    recent = [c for c in inventory.current_changes(since) if isinstance(c, Cart)]
    assert recent == [Cart("b" * 64, 1, (size,))]
    assert len([c for c in inventory.current_changes() if isinstance(c, Cart)]) == 2


def test_a_change_that_changes_nothing_leaves_no_cart_and_publishes_nothing(settings):
    """Anonymous input (any minted shopper id) must not grow the database or every node's cache."""
    from sneakers23.domain.carts import CartRequest

    published = []

    class Recorder:
        def publish(self, changes):
            published.extend(changes)

    inventory = Inventory(settings, replication=Recorder())
    try:
        inventory.seed(random_seed=7)
        inventory.release(1)
        first = sizes_in_stock(inventory, 1, 1)[0]
        published.clear()
        strangers = [f"{n:064x}" for n in range(20)]
        outcomes = inventory.change_carts([CartRequest(s, remove=(first,)) for s in strangers]
                                          + [CartRequest(SHOPPER, add=9999)])
        assert outcomes == [Cart(s, 0, ()) for s in strangers] + [CartRefusal.NOT_FOUND]
        assert inventory.all_carts() == [] and published == []
        inventory.add_to_cart(SHOPPER, first)
        assert published == [Cart(SHOPPER, 1, (first,))] and len(inventory.all_carts()) == 1
    finally:
        inventory.close()


def test_only_carts_that_hold_something_count_in_the_version_total(inventory):
    """Memory keeps no empty cart (domain.catalog): the database's total must count as it does."""
    inventory.release(1)
    before = inventory.database_version()
    (size,) = sizes_in_stock(inventory, 1, 1)
    inventory.add_to_cart(SHOPPER, size)
    assert inventory.database_version() == before + 1
    inventory.remove_from_cart(SHOPPER, [size])
    assert inventory.database_version() == before
    assert inventory.all_carts() == [Cart(SHOPPER, 2, ())]  # (the row stays, for a late change's sake)


def test_idle_carts_are_emptied_and_published(settings):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    published = []

    class Recorder:
        def publish(self, changes):
            published.extend(changes)

    inventory = Inventory(settings.model_copy(update={"cart_idle_days": 2}), replication=Recorder())
    idle, fresh, emptied = (f"{n:064x}" for n in range(1, 4))
    try:
        inventory.seed(random_seed=7)
        inventory.release(1)
        first, second = sizes_in_stock(inventory, 1, 2)
        for shopper in (idle, fresh, emptied):
            inventory.add_to_cart(shopper, first)
        inventory.add_to_cart(idle, second)
        inventory.remove_from_cart(emptied, [first])
        now = datetime.now(timezone.utc)
        for shopper, then in ((idle, now - timedelta(days=2, minutes=1)), (fresh, now - timedelta(days=1)),
                              (emptied, now - timedelta(days=30))):
            with inventory.engine.begin() as connection:
                connection.execute(text("UPDATE carts SET updated_at = :then WHERE shopper_id = :who"),
                                   {"then": then, "who": shopper})
        published.clear()
        total = inventory.database_version()

        assert inventory.expire_carts(batch=1) == [Cart(idle, 3, ())]  # (batches of one: a second finds none)
        assert published == [Cart(idle, 3, ())]
        assert inventory.database_version() == total - 2  # (the idle cart's version counts no more)
        assert {cart.shopper_id: cart for cart in inventory.all_carts()} == {
            idle: Cart(idle, 3, ()), fresh: Cart(fresh, 1, (first,)), emptied: Cart(emptied, 2, ())}
        assert inventory.expire_carts() == [] and len(published) == 1  # nothing more to do
        # The rows stay, so that a cart's version never starts again (its tabs show the newest).
        assert inventory.add_to_cart(idle, first) == Cart(idle, 4, (first,))
        # Many at once: in batches, every one of them.
        many = [f"{n:064x}" for n in range(100, 105)]
        for shopper in many:
            inventory.add_to_cart(shopper, first)
        with inventory.engine.begin() as connection:
            connection.execute(text("UPDATE carts SET updated_at = :then WHERE shopper_id <> :fresh"),
                               {"then": now - timedelta(days=3), "fresh": fresh})
        assert sorted(c.shopper_id for c in inventory.expire_carts(batch=2)) == sorted([idle, *many])
    finally:
        inventory.close()


def test_anti_entropys_full_read_of_the_carts_leaves_out_the_empty_ones(inventory):
    inventory.release(1)
    (size,) = sizes_in_stock(inventory, 1, 1)
    inventory.add_to_cart(SHOPPER, size)
    inventory.add_to_cart("b" * 64, size)
    inventory.remove_from_cart("b" * 64, [size])
    in_full = [c for c in inventory.current_changes() if isinstance(c, Cart)]
    assert in_full == [Cart(SHOPPER, 1, (size,))]
    from datetime import datetime, timedelta, timezone

    lately = [c for c in inventory.current_changes(datetime.now(timezone.utc) - timedelta(minutes=1))
              if isinstance(c, Cart)]
    assert sorted(lately, key=lambda c: c.shopper_id) == [Cart(SHOPPER, 1, (size,)), Cart("b" * 64, 2, ())]
