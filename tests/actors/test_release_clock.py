"""The release clock on the session's Ray cluster: idle carts expire, in the database and in every
node's memory; a scheduled product's sales actor is started before its release."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
import ray
from sqlalchemy import text

from sneakers23.actors.release_clock import EXPIRE_CARTS_EVERY_S, SALES_AHEAD_S, SALES_EVERY_S
from sneakers23.domain.changes import Cart
from sneakers23.inventory import Inventory
from tests.actors.test_replication import in_stock_item
from tests.conftest import SEED
from tests.support import aio, cluster
from tests.support.cluster import ensure_released
from harness.waiting import until, wait_for

@pytest.mark.usefixtures("ray_store")
def test_a_cart_left_idle_past_its_days_is_emptied_everywhere(ray_settings):
    ensure_released(ray_settings, 1)
    item = in_stock_item(ray_settings)
    shopper = "0" * 63 + "3"
    long_ago = datetime.now(timezone.utc) - timedelta(days=ray_settings.cart_idle_days, minutes=1)
    inventory = Inventory(ray_settings)  # publishes nothing: the caches heal the cart in
    try:
        with inventory.engine.begin() as connection:  # a cart last touched over a week ago
            connection.execute(text("INSERT INTO carts (shopper_id, version, updated_at) VALUES (:who, 5, :then)"),
                               {"who": shopper, "then": long_ago})
            connection.execute(text("INSERT INTO cart_items (shopper_id, item_id, added_at) VALUES (:who, :item, :then)"),
                               {"who": shopper, "item": item, "then": long_ago})
        assert inventory.cart(shopper) == Cart(shopper, 5, (item,))
        wait_for(lambda: inventory.cart(shopper) == Cart(shopper, 6, ()),
                 timeout=EXPIRE_CARTS_EVERY_S * 2 + 10, what="the release clock to empty the idle cart")
        for node in ("head", "node_a", "node_b"):
            wait_for(lambda node=node: all(cart.shopper_id != shopper
                                           for cart in ray.get(cluster.cache(node).snapshot.remote()).carts),
                     what=f"{node}'s cache to forget the emptied cart")
    finally:
        inventory.close()


@pytest.mark.usefixtures("ray_store")
def test_a_products_sales_actor_is_started_and_loaded_before_its_release(ray_settings):
    """Scheduled, a product's sales actor is started ahead (within SALES_AHEAD_S of the release), so
    that no purchase of the drop's first second waits for it to start and load its ledger."""
    from sneakers23.actors.sales import sales_actor_names, sales_name
    from sneakers23.cluster import NAMESPACE, RayReplication

    inventory = cluster.reseed(ray_settings, SEED)  # (nothing on sale, nothing scheduled)
    inventory.close()
    try:  # (started by an earlier test: gone for good, so that the clock has to start it)
        ray.kill(ray.get_actor(sales_name(2), namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass
    wait_for(lambda: sales_name(2) not in sales_actor_names(), what="product 2's sales actor gone")
    publishing = Inventory(ray_settings, replication=RayReplication())
    try:
        publishing.schedule_release(2, datetime.now(timezone.utc) + timedelta(seconds=SALES_AHEAD_S / 2))
        wait_for(lambda: sales_name(2) in sales_actor_names(), timeout=SALES_EVERY_S * 10 + 20,
                 what="the release clock to start product 2's sales actor")
        stats = ray.get(ray.get_actor(sales_name(2), namespace=NAMESPACE).read_stats.remote(), timeout=60)
        assert stats.reloads >= 1 and stats.admitted == 0, stats  # (its ledger loaded, before any purchase)
    finally:
        publishing.close()
        # (the schedule turned product 2's sign-in on, as for any drop: the seed's shop again, for
        # the tests after, which buy it as guests: CI52)
        cluster.reseed(ray_settings, SEED).close()


def test_the_clock_wakes_at_a_releases_time_not_up_to_a_tick_after():
    from sneakers23.actors.release_clock import SOONEST_S, TICK_S, pause_before_next

    assert pause_before_next(TICK_S, None) == TICK_S  # (nothing scheduled: a tick, to see a new schedule)
    assert pause_before_next(TICK_S, 3_600.0) == TICK_S
    assert pause_before_next(TICK_S, 0.07) == pytest.approx(0.07)  # (woken at the release's time)
    assert pause_before_next(TICK_S, 0.0) == pause_before_next(TICK_S, -2.0) == SOONEST_S  # (due: read again soon, never a busy loop)


class Schedule:
    """The inventory as the clock's loop reads it: one release, due a moment from now."""

    def __init__(self, due_in_s: float):
        self.due_at = time.monotonic() + due_in_s
        self.made_at: float | None = None
        self.reads = self.reads_when_made = 0

    def next_release_in_s(self) -> float | None:
        self.reads += 1
        return None if self.made_at is not None else self.due_at - time.monotonic()

    def release_due(self) -> list:
        if self.made_at is not None or time.monotonic() < self.due_at:
            return []
        self.made_at, self.reads_when_made = time.monotonic(), self.reads
        return ["product 2"]


def test_the_clocks_loop_makes_a_release_at_its_time_between_two_ticks():
    """The loop as the actor runs it, with a tick far longer than the wait: the release is made
    at its time, not at the next tick, once; then the clock only reads at its ticks."""
    from sneakers23.actors.release_clock import release_on_time

    async def run() -> None:
        schedule, told = Schedule(0.3), []
        clock = asyncio.ensure_future(release_on_time(schedule, 30.0, told.append))
        try:
            await until(lambda: told, timeout=10, what="the release")
            assert told == [["product 2"]] and schedule.made_at - schedule.due_at < 1.0  # (a tick is 30 s)
            await asyncio.sleep(0.3)  # (a window in which it must not read again: its next tick is 30 s off)
            assert schedule.reads <= schedule.reads_when_made + 1 and told == [["product 2"]]  # (one read after it)
        finally:
            clock.cancel()

    aio.run(run())  # (in a thread of its own: a Chromium test of this worker may keep a loop running here)
