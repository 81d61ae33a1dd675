"""The live catalog (sneakers23/live.py): a page that waits for the shopper's own cart change to reach
this node's copy. (Its following of a node cache: tests/serve/test_channels.py and the cluster tests.)"""

from __future__ import annotations

import asyncio

from sneakers23.actors.node_cache import Snapshot
from sneakers23.domain.changes import Cart
from sneakers23.live import CART_WAITERS_MAX, LiveCatalog
from tests.serve.test_channels import make_catalog
from tests.support.aio import run
from harness.waiting import until


def live_catalog() -> LiveCatalog:
    live = LiveCatalog()
    live._install(Snapshot("epoch-1", 0, make_catalog(released=True).products(), [Cart("ada", 3, (1,))]))
    return live


def test_a_page_waits_for_the_cart_its_shopper_saw_and_no_longer_than_it_must():
    async def scenario():
        live = live_catalog()
        # Seen already: at once.
        assert (await asyncio.wait_for(live.cart_seen("ada", 3, 5.0), 1)).version == 3
        # Version 4 is on its way: the page waits for it, and has it as soon as it comes.
        waiting = asyncio.create_task(live.cart_seen("ada", 4, 5.0))
        await until(lambda: "ada" in live._cart_waiters, what="the page to wait")
        assert not waiting.done()
        live._apply([Cart("bob", 9, (2,))])  # (another shopper's: not this page's)
        await asyncio.sleep(0.05)
        assert not waiting.done()
        live._apply([Cart("ada", 4, (1, 2))])
        assert (await asyncio.wait_for(waiting, 1)).item_ids == (1, 2)
        # The cart emptied at a later version (bought in another tab) ends the wait too.
        waiting = asyncio.create_task(live.cart_seen("ada", 5, 5.0))
        await until(lambda: "ada" in live._cart_waiters, what="the page to wait")
        live._apply([Cart("ada", 6, ())])
        assert (await asyncio.wait_for(waiting, 1)).item_ids == ()
        # A version that never comes: the cart as it is, after the time allowed; nothing is kept.
        assert (await live.cart_seen("ada", 99, 0.1)).version == 0  # (an emptied cart is not kept)
        assert live._cart_waiters == {}

    run(scenario())


def test_a_shopper_holds_one_waiting_page_and_the_replica_a_few_the_rest_are_shown_memory_at_once():
    async def scenario():
        live = live_catalog()
        first = asyncio.create_task(live.cart_seen("ada", 4, 5.0))
        await until(lambda: "ada" in live._cart_waiters, what="the page to wait")
        # A second page of the same shopper, asking for a version that may never come: at once.
        assert (await asyncio.wait_for(live.cart_seen("ada", 99, 5.0), 0.5)).version == 3
        others = [asyncio.create_task(live.cart_seen(f"s{k}", 1, 5.0)) for k in range(CART_WAITERS_MAX - 1)]
        await until(lambda: len(live._cart_waiters) >= CART_WAITERS_MAX, what="the pages to wait")
        assert len(live._cart_waiters) == CART_WAITERS_MAX
        assert (await asyncio.wait_for(live.cart_seen("eve", 1, 5.0), 0.5)).version == 0  # (past the cap)
        # A page that goes away (its client left) leaves nothing behind.
        for task in [first, *others]:
            task.cancel()
        await asyncio.gather(first, *others, return_exceptions=True)
        assert live._cart_waiters == {}

    run(scenario())


def test_a_page_waiting_when_the_copy_starts_again_from_a_snapshot_gets_what_the_snapshot_holds():
    async def scenario():
        live = live_catalog()
        waiting = asyncio.create_task(live.cart_seen("ada", 7, 5.0))
        await until(lambda: "ada" in live._cart_waiters, what="the page to wait")
        live._install(Snapshot("epoch-2", 0, make_catalog(released=True).products(), [Cart("ada", 7, (3,))]))
        assert (await asyncio.wait_for(waiting, 1)).item_ids == (3,)
        assert live._cart_waiters == {}

    run(scenario())
