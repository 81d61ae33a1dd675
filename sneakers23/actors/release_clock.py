"""The release clock: one small actor per cluster that releases products when their scheduled time
comes, closes the draws of those sold by draw (their release is the close), keeps the waiting rooms
of those sold by queue (inventory/waiting_rooms.py: the one keeper), starts the sales actors of the
products on sale or released soon, and lets idle carts expire. The database holds the times, so a
restarted clock just goes on; a release or an expiry goes through the inventory API, which commits
it, then publishes it to every node's cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import ray

from sneakers23.cluster import RELEASE_CLOCK_NAME, detached
from sneakers23.inventory import Inventory
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

TICK_S = 0.25
SOONEST_S = 0.002  # its shortest sleep: a release due now is read again, never in a busy loop
DRAWS_EVERY_S = 2.0
QUEUES_EVERY_S = 0.5  # (a pace of 600 a minute lets in 5 a tick)
EXPIRE_CARTS_EVERY_S = 10.0
# Sales actors are started ahead: of each product on sale (at the store's start, and after one was
# lost), and of each scheduled within this, so that no purchase of a drop's first second waits for
# one to start and load (0.68 s on a fresh store, where the next purchase took 16 ms).
SALES_AHEAD_S = 15 * 60.0
SALES_EVERY_S = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class ReleaseClock:
    def __init__(self, make_inventory: Callable[[], Inventory], start_sales: Callable[[int], bool] | None = None,
                 tick_s: float = TICK_S, expire_every_s: float = EXPIRE_CARTS_EVERY_S):
        # The inventory as its process needs it, made by the composition root (sneakers23.assembly),
        # which also says how a product's sales actor is started (True: it was not running).
        self._inventory = make_inventory()
        self._start_sales = start_sales
        self._tick_s = tick_s
        self._expire_every_s = expire_every_s
        self._tasks: set[asyncio.Task] = set()
        # At once, and again after every restart (async actors run __init__ before their event
        # loop; a task created here starts with it).
        self._draw_now = asyncio.Event()
        self._queues_now = asyncio.Event()
        keep(self._tasks, asyncio.get_event_loop().create_task(self._release_forever()))
        keep(self._tasks, asyncio.get_event_loop().create_task(self._draw_forever()))
        keep(self._tasks, asyncio.get_event_loop().create_task(self._expire_carts_forever()))
        keep(self._tasks, asyncio.get_event_loop().create_task(self._keep_queues_forever()))
        if start_sales is not None:
            keep(self._tasks, asyncio.get_event_loop().create_task(self._start_sales_forever()))

    async def _release_forever(self) -> None:
        await release_on_time(self._inventory, self._tick_s, self._released)

    def _released(self, changes: list) -> None:
        log.info("released on schedule: %s", [change.product_id for change in changes])
        self._draw_now.set()  # (one of them may be a draw: its release is its close)
        self._queues_now.set()  # (or a queue: its pre-queue is shuffled at once)

    async def _draw_forever(self) -> None:
        """Draws close at their release, whoever released them (the staff too): looked for after
        every release made here, and every few seconds (one a restart left half given goes on).
        A task of its own, so that a big draw never holds up the next release."""
        while True:
            try:
                await asyncio.wait_for(self._draw_now.wait(), DRAWS_EVERY_S)
            except asyncio.TimeoutError:
                pass
            self._draw_now.clear()
            try:
                for report in await asyncio.to_thread(self._inventory.run_due_draws):
                    log.info("drew: %s", report)
            except Exception as error:  # the database may be away: the next round tries again
                log.warning("looking for draws to close failed this time: %s", error)

    async def _keep_queues_forever(self) -> None:
        """The waiting rooms' ticks: a task of its own, so that a big draw's close never holds the
        queues up (nor they it)."""
        while True:
            self._queues_now.clear()
            try:
                await asyncio.to_thread(self._inventory.keep_waiting_rooms)
            except Exception as error:  # the database may be away: the next tick reads the rooms again
                log.warning("keeping the waiting rooms failed this time: %s", error)
            try:  # the next tick, or at once after a release made here
                await asyncio.wait_for(self._queues_now.wait(), QUEUES_EVERY_S)
            except asyncio.TimeoutError:
                pass

    async def _start_sales_forever(self) -> None:
        while True:
            try:
                for product_id in await asyncio.to_thread(self._inventory.on_sale_soon, SALES_AHEAD_S):
                    if await asyncio.to_thread(self._start_sales, product_id):
                        log.info("started the sales actor of product %s ahead of its purchases", product_id)
            except Exception as error:  # the database or the store may be away: the next round tries again
                log.warning("starting sales actors ahead failed this time: %s", error)
            await asyncio.sleep(SALES_EVERY_S)

    async def _expire_carts_forever(self) -> None:
        while True:
            await asyncio.sleep(self._expire_every_s)
            try:
                emptied = await asyncio.to_thread(self._inventory.expire_carts)
                if emptied:
                    log.info("emptied %d idle carts", len(emptied))
            except Exception as error:  # the database may be away: the next round tries again
                log.warning("expiring idle carts failed this time: %s", error)

    async def ready(self) -> bool:
        return True


async def release_on_time(inventory, tick_s: float, released: Callable[[list], None]) -> None:
    """For ever: each scheduled release made at its time (`released` is told of those made), the
    next release time read every tick and slept until when it is sooner."""
    while True:
        pause = tick_s
        try:
            due_in = await asyncio.to_thread(inventory.next_release_in_s)
            if due_in is not None and due_in <= 0:
                made = await asyncio.to_thread(inventory.release_due)
                if made:
                    released(made)
                    due_in = await asyncio.to_thread(inventory.next_release_in_s)
                else:  # (due as read, released by none: another clock was first, or a time the
                    due_in = None  # database compares otherwise; a tick, never a loop of reads)
            pause = pause_before_next(tick_s, due_in)
        except Exception as error:  # the database may be away: the next tick tries again
            log.warning("scheduled releases failed this time: %s", error)
        await asyncio.sleep(pause)


def pause_before_next(tick_s: float, due_in_s: float | None) -> float:
    """The clock's next sleep: a tick, or less when a release is due sooner, so that it is made at
    its time, not up to a tick after (a drop's first push and its queue's first positions wait for
    it). A tick still comes while nothing is due: a release scheduled meanwhile is seen then."""
    if due_in_s is None:
        return tick_s
    return min(tick_s, max(SOONEST_S, due_in_s))


def release_clock(make_inventory: Callable[[], Inventory], start_sales: Callable[[int], bool] | None = None):
    """The cluster's release clock, started if it is not running (detached: it outlives us)."""
    return detached(ReleaseClock, RELEASE_CLOCK_NAME).remote(make_inventory, start_sales)
