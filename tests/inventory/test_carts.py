"""The carts service (sneakers23/inventory/carts.py): grouped changes, and a batch that fails."""

from __future__ import annotations

import asyncio

from sneakers23.domain.changes import Cart
from sneakers23.errors import DatabaseUnavailable
from tests.support.aio import run


def test_a_batch_of_cart_changes_that_fails_tells_every_change_and_the_next_batch_goes_on(inventory, monkeypatch):
    inventory.release(1)
    sizes = [i.id for i in inventory.complete_products()[0].items if i.available_count > 0][:2]
    real = inventory.carts.change_carts
    calls = []

    def failing_once(requests):
        calls.append(len(requests))
        if len(calls) == 1:
            raise DatabaseUnavailable("the database is away")
        return real(requests)

    monkeypatch.setattr(inventory.carts, "change_carts", failing_once)

    async def tabs():
        first = [inventory.add_to_cart_async(f"{n:064x}", sizes[0]) for n in range(5)]
        outcomes = await asyncio.gather(*first, return_exceptions=True)
        return outcomes, await inventory.add_to_cart_async("a" * 64, sizes[1])

    outcomes, after = run(tabs())
    assert calls == [5, 1]  # the five asked for at once went together, and failed
    assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes)  # each one told
    assert isinstance(after, Cart) and after.item_ids == (sizes[1],)  # the next batch went on
    assert all(inventory.cart(f"{n:064x}").item_ids == () for n in range(5))
