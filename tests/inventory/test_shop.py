"""The shop (sneakers23/inventory/shop.py) on SQLite and PostgreSQL: selling is decided by the
database, under races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import shop
from sneakers23.domain.purchases import Refusal
from sneakers23.domain.drops import DropMode
from sneakers23.errors import AlreadyReleased, DropModeRefused, NotFound
from sneakers23.inventory import Inventory

HOT_ITEM = 3  # product 1, size 7


def race(settings, jobs):
    """Run each job on its own thread with its own connection, all released at once."""
    barrier = threading.Barrier(len(jobs))

    def run(job):
        inventory = Inventory(settings)  # its own engine, so its own database connection
        try:
            inventory.complete_products()  # connect before the start line
            barrier.wait()
            return job(inventory)
        finally:
            inventory.close()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(run, jobs))


def test_64_buyers_race_for_10_pairs(inventory, settings):
    inventory.release(1)
    shop.set_available(inventory, HOT_ITEM, 10)
    results = race(settings, [lambda inv, n=n: inv.purchase(f"buyer-{n}", [HOT_ITEM]) for n in range(64)])
    sold = [r for r in results if r.ok]
    assert len(sold) == 10
    assert {r.refusal for r in results if not r.ok} == {Refusal.SOLD_OUT}
    assert shop.available(inventory, HOT_ITEM) == 0
    assert shop.order_count(inventory, item_id=HOT_ITEM) == 10
    # Every sale saw a different count, from 9 down to 0, each with its own version.
    assert sorted(r.units[0].available_count for r in sold) == list(range(10))
    assert len({r.units[0].version for r in sold}) == 10


def test_a_multi_item_purchase_with_one_sold_out_item_changes_nothing(inventory):
    inventory.release(1)
    shop.set_available(inventory, 5, 0)
    before = shop.all_counts(inventory)
    result = inventory.purchase("shopper", [1, 5])
    assert result.refusal is Refusal.SOLD_OUT and result.refused_item_id == 5
    assert shop.all_counts(inventory) == before
    assert shop.order_count(inventory) == 0


def test_a_multi_item_purchase_rolls_back_when_the_last_pair_goes_first(inventory, settings):
    """The sold-out check that decides is the decrement itself, not an earlier read."""
    inventory.release(1)
    inventory.release(2)
    shop.set_available(inventory, 20, 1)
    assert inventory.purchase("someone-else", [20]).ok
    before = shop.all_counts(inventory)
    result = inventory.purchase("shopper", [1, 20])
    assert result.refusal is Refusal.SOLD_OUT and result.refused_item_id == 20
    assert shop.all_counts(inventory) == before
    assert shop.order_count(inventory, shopper_id="shopper") == 0


def test_a_multi_item_purchase_sells_every_pair_at_once(inventory):
    inventory.release(1)
    inventory.release(2)
    before = shop.all_counts(inventory)
    result = inventory.purchase("shopper", [14, 1])
    assert result.ok and [u.item_id for u in result.units] == [14, 1]
    assert shop.available(inventory, 1) == before[1] - 1 and shop.available(inventory, 14) == before[14] - 1
    assert shop.order_count(inventory, shopper_id="shopper") == 2


def test_one_shopper_gets_one_pair_per_size(inventory):
    inventory.release(1)
    assert inventory.purchase("shopper", [1]).ok
    again = inventory.purchase("shopper", [1])
    assert again.refusal is Refusal.LIMIT_REACHED
    assert inventory.purchase("shopper", [2, 2]).refusal is Refusal.LIMIT_REACHED
    assert shop.order_count(inventory, shopper_id="shopper") == 1


def test_one_shopper_gets_at_most_the_product_limit(inventory):
    inventory.release(1)
    assert inventory.purchase("shopper", [1, 2, 4]).refusal is Refusal.LIMIT_REACHED  # 3 > 2 at once
    assert inventory.purchase("shopper", [1]).ok
    assert inventory.purchase("shopper", [2]).ok
    assert inventory.purchase("shopper", [4]).refusal is Refusal.LIMIT_REACHED
    inventory.release(2)
    assert inventory.purchase("shopper", [14]).ok  # the limit is per product
    assert shop.order_count(inventory, shopper_id="shopper") == 3


def test_one_shoppers_concurrent_requests_never_pass_the_limits(inventory, settings):
    inventory.release(1)
    in_stock = [i.id for i in inventory.complete_products()[0].items if i.available_count > 0]
    sizes = in_stock[:8]
    jobs = [lambda inv, item=item: inv.purchase("greedy", [item]) for item in sizes for _ in range(4)]
    results = race(settings, jobs)
    assert sum(r.ok for r in results) == 2  # settings.max_pairs_per_product
    assert {r.refusal for r in results if not r.ok} == {Refusal.LIMIT_REACHED}
    assert shop.order_count(inventory, shopper_id="greedy") == 2


def test_one_shopper_racing_for_one_size_gets_one_pair(inventory, settings):
    inventory.release(1)
    results = race(settings, [lambda inv: inv.purchase("twin", [1]) for _ in range(16)])
    assert sum(r.ok for r in results) == 1
    assert shop.order_count(inventory, shopper_id="twin") == 1


def test_a_repeated_idempotency_key_sells_once(inventory):
    inventory.release(1)
    before = shop.available(inventory, 1)
    first = inventory.purchase("shopper", [1, 2], idempotency_key="checkout-1")
    again = inventory.purchase("shopper", [1, 2], idempotency_key="checkout-1")
    assert first.ok and again.ok and again.replayed and not first.replayed
    assert again.units == first.units and again.changes == first.changes
    assert shop.available(inventory, 1) == before - 1
    assert shop.order_count(inventory, shopper_id="shopper") == 2


def test_an_idempotency_key_sent_again_with_other_items_is_refused(inventory):
    inventory.release(1)
    assert inventory.purchase("shopper", [1], idempotency_key="k").ok
    reused = inventory.purchase("shopper", [2], idempotency_key="k")
    assert reused.refusal is Refusal.KEY_REUSED and "earlier purchase" in reused.message
    assert shop.order_count(inventory, shopper_id="shopper") == 1


def test_a_repeated_idempotency_key_sells_once_under_a_race(inventory, settings):
    inventory.release(1)
    results = race(settings, [lambda inv: inv.purchase("retrier", [1], idempotency_key="k") for _ in range(16)])
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert len({r.units for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert shop.order_count(inventory, shopper_id="retrier") == 1


def test_the_same_key_from_another_shopper_is_another_purchase(inventory):
    inventory.release(1)
    assert not inventory.purchase("a", [1], idempotency_key="k").replayed
    assert not inventory.purchase("b", [1], idempotency_key="k").replayed
    assert shop.order_count(inventory, item_id=1) == 2


def test_an_unreleased_product_cannot_be_bought(inventory):
    before = shop.all_counts(inventory)
    result = inventory.purchase("shopper", [14])
    assert result.refusal is Refusal.NOT_RELEASED and "not released" in result.message
    assert shop.all_counts(inventory) == before and shop.order_count(inventory) == 0


def test_an_unknown_item_is_refused(inventory):
    inventory.release(1)
    result = inventory.purchase("shopper", [1, 999])
    assert result.refusal is Refusal.UNKNOWN_ITEM and result.refused_item_id == 999
    assert shop.order_count(inventory) == 0


def test_a_sold_out_item_is_refused(inventory):
    inventory.release(1)
    shop.set_available(inventory, 1, 1)
    assert inventory.purchase("first", [1]).units[0].available_count == 0
    assert inventory.purchase("second", [1]).refusal is Refusal.SOLD_OUT
    assert shop.available(inventory, 1) == 0


def test_versions_grow_with_every_change(inventory):
    product_version = shop.product_version(inventory, 1)
    released = inventory.release(1)
    assert released.newly_released and released.change.version == product_version + 1
    again = inventory.release(1)  # idempotent: nothing changes, the same version comes back
    assert not again.newly_released and again.change.version == released.change.version
    assert shop.product_version(inventory, 1) == released.change.version

    versions = [shop.availability_version(inventory, 1)]
    for n in range(3):
        result = inventory.purchase(f"buyer-{n}", [1])
        versions.append(result.changes[0].version)
        assert result.changes[0].version == shop.availability_version(inventory, 1)
    assert versions == sorted(set(versions)) and len(versions) == 4


def test_releasing_an_unknown_product_is_an_error(inventory):
    with pytest.raises(NotFound, match="no product 9"):
        inventory.release(9)


def test_complete_products_carry_counts_and_levels(inventory):
    shop.set_available(inventory, 1, 149)
    shop.set_available(inventory, 2, 0)
    products = inventory.complete_products()
    first = products[0].items
    assert (first[0].available_count, str(first[0].level)) == (149, "low")
    assert (first[1].available_count, str(first[1].level)) == (0, "out")


def test_sell_sells_pairs_one_synthetic_shopper_each(inventory):
    inventory.release(1)
    shop.set_available(inventory, 1, 5)
    report = inventory.sell(1, 3)
    assert (report.sold, report.available_count, report.refused) == (3, 2, None)
    report = inventory.sell(1, 5)
    assert report.sold == 2 and report.refused.refusal is Refusal.SOLD_OUT and str(report.level) == "out"
    assert shop.order_count(inventory, item_id=1) == 5


def test_malformed_purchases_touch_nothing(inventory):
    with pytest.raises(ValueError):
        inventory.purchase("", [1])
    with pytest.raises(ValueError):
        inventory.purchase("shopper", [])
    assert shop.order_count(inventory) == 0


def test_the_inventory_offers_every_operation_of_its_services_under_its_own_name(inventory):
    from sneakers23.inventory import SERVICES, operations

    names = [name for service in SERVICES.values() for name in operations(service)]
    assert len(names) == len(set(names)), "no two services share an operation's name"
    assert inventory.release(1).newly_released and inventory.shop.complete_products()[0].released
    assert Inventory.release.__doc__ == SERVICES["shop"].release.__doc__ and inventory.desk.shop is inventory.shop


class Recorded:
    """The Replication port, as the list of the changes published to it."""

    def __init__(self):
        self.published = []

    def publish(self, changes):
        self.published.extend(changes)


@pytest.fixture
def published_by(settings):
    """A seeded inventory, and the list of the changes it publishes."""
    replication = Recorded()
    inventory = Inventory(settings, replication=replication)
    inventory.seed(random_seed=23)
    yield inventory, replication.published
    inventory.close()


def test_a_sign_in_drop_sells_to_verified_accounts_only_and_its_setting_is_published(published_by):
    inventory, published = published_by
    inventory.release(1)
    change = inventory.require_sign_in(1)
    assert change.sign_in_required and change.released and published[-1] == change
    assert inventory.require_sign_in(1).version == change.version  # set already: nothing moves
    assert inventory.purchase("a" * 64, [1]).refusal is Refusal.SIGN_IN_REQUIRED
    assert inventory.purchase("account-9", [1]).ok
    assert next(p for p in inventory.complete_products() if p.id == 1).sign_in_required
    assert not inventory.require_sign_in(1, False).sign_in_required
    assert inventory.purchase("a" * 64, [2]).ok
    with pytest.raises(NotFound):
        inventory.require_sign_in(99)


def test_a_new_drop_scheduled_sells_to_signed_in_shoppers_unless_the_staff_chose_and_says_so(published_by):
    from datetime import datetime, timedelta, timezone

    inventory, published = published_by
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduled = inventory.schedule_release(2, soon)
    assert scheduled.sign_in_required and scheduled.release_at == soon and published[-1] == scheduled  # the default
    assert inventory.schedule_release(2, None).sign_in_required  # a cancel keeps it
    # The staff chose guests too: a schedule keeps their choice, and so does the next.
    assert not inventory.require_sign_in(2, False).sign_in_required
    assert not inventory.schedule_release(2, soon).sign_in_required
    assert not inventory.schedule_release(2, soon + timedelta(minutes=5)).sign_in_required
    # Chosen as it already was counts as a choice too (nothing else moves).
    assert inventory.require_sign_in(1, False).version == next(p for p in inventory.complete_products() if p.id == 1).version
    # A release made at once keeps what is set: the product a new store sells first takes guests.
    released = inventory.release(1).change
    assert released.released and not released.sign_in_required
    assert inventory.purchase("a" * 64, [1]).ok
    # The staff's desk says so in the audit.
    from sneakers23.domain.admin import ActionKind, AdminAction

    inventory.set_drop_mode(2, DropMode.FIRST_COME)
    entry = inventory.act("Ada", AdminAction(ActionKind.SCHEDULE, product_id=2, at=soon), client="test")
    assert entry.ok and entry.result.startswith("goes on sale at") and "signed-in" not in entry.result
    inventory.require_sign_in(2)
    entry = inventory.act("Ada", AdminAction(ActionKind.SCHEDULE, product_id=2, at=soon), client="test")
    assert entry.result.endswith("; sold to signed-in shoppers only"), entry.result


def test_a_drop_mode_is_set_before_the_release_takes_sign_in_with_it_and_is_published(published_by):
    inventory, published = published_by
    change = inventory.set_drop_mode(2, DropMode.QUEUE)
    assert (change.drop_mode, change.sign_in_required, change.released) == (DropMode.QUEUE, True, False)
    assert published[-1] == change
    assert inventory.set_drop_mode(2, DropMode.QUEUE).version == change.version  # set already: nothing moves
    # A queue is one place per account: guests may not come back to it.
    with pytest.raises(DropModeRefused, match="product 2 is a queue drop"):
        inventory.require_sign_in(2, False)
    draw = inventory.set_drop_mode(2, DropMode.DRAW)
    assert draw.drop_mode is DropMode.DRAW and draw.version == change.version + 1
    # Back to first come, the product stays for signed-in shoppers until the staff say otherwise.
    back = inventory.set_drop_mode(2, DropMode.FIRST_COME)
    assert back.drop_mode is DropMode.FIRST_COME and back.sign_in_required
    assert not inventory.require_sign_in(2, False).sign_in_required
    inventory.set_drop_mode(2, DropMode.QUEUE)
    released = inventory.release(2).change
    assert released.drop_mode is DropMode.QUEUE and released.sign_in_required  # the release carries it
    assert next(p for p in inventory.complete_products() if p.id == 2).drop_mode is DropMode.QUEUE
    for mode in (DropMode.FIRST_COME, DropMode.QUEUE):  # (fixed, even asked for as it is)
        with pytest.raises(AlreadyReleased, match="already released: its drop mode stays queue"):
            inventory.set_drop_mode(2, mode)
    with pytest.raises(NotFound):
        inventory.set_drop_mode(99, DropMode.DRAW)


def test_the_database_keeps_a_queue_or_a_draw_for_signed_in_shoppers_and_knows_only_the_three_modes(inventory):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    for statement in ("UPDATE products SET drop_mode = 'queue', sign_in_required = false WHERE id = 2",
                      "UPDATE products SET drop_mode = 'lottery', sign_in_required = true WHERE id = 2"):
        with pytest.raises(IntegrityError):
            with inventory.engine.begin() as connection:
                connection.execute(text(statement))


def test_the_next_release_time_is_known_and_a_release_is_made_once_it_has_come(inventory):
    """The release clock sleeps until the next release (actors/release_clock.py): the shop says how
    long that is, the earliest of those scheduled, and releases nothing before it."""
    from datetime import datetime, timedelta, timezone

    from harness.waiting import wait_for

    assert inventory.next_release_in_s() is None  # (nothing scheduled)
    now = datetime.now(timezone.utc)
    # (a time in another zone is the same moment: kept as UTC, on SQLite too)
    inventory.schedule_release(2, (now + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))))
    inventory.schedule_release(1, now + timedelta(seconds=30))
    assert 25 < inventory.next_release_in_s() <= 30  # the earliest
    assert inventory.release_due() == []
    inventory.schedule_release(1, datetime.now(timezone.utc) + timedelta(seconds=2))
    assert 0 < inventory.next_release_in_s() <= 2
    wait_for(lambda: inventory.next_release_in_s() <= 0, timeout=10, what="product 1's release time")
    assert [change.product_id for change in inventory.release_due()] == [1]
    assert 3_500 < inventory.next_release_in_s() <= 3_600  # (product 2's, now the next)
    assert inventory.release_due() == []
