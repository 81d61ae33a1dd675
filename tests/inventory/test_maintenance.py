"""Maintenance (sneakers23/inventory/maintenance.py): the seed, under the store's readers."""

from __future__ import annotations

import threading

from sqlalchemy import text

from harness.waiting import wait_for
from sneakers23.inventory import Inventory


def test_a_reseed_that_deadlocks_with_a_reader_is_tried_again(inventory, settings):
    """A reseed locks every table, in an order that the store's readers and writers do not
    always share: PostgreSQL then ends one of the two, and a reseed it ends is tried again."""
    on_postgres = settings.database_url.startswith("postgresql")  # (on SQLite, WAL readers never hold up a writer)
    reader = Inventory(settings)
    try:
        with reader.engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(text("SELECT count(*) FROM item_availabilities")).scalar_one()  # held until the end
            done = []
            reseed = threading.Thread(target=lambda: done.append(inventory.seed(random_seed=1, reset=True)))
            reseed.start()
            if on_postgres:
                wait_for(lambda: _lock_waits(inventory) > 0, what="the reseed to wait for the reader's lock")
            try:
                connection.execute(text("SELECT count(*) FROM cart_items")).scalar_one()  # the other order
            except Exception:
                pass  # PostgreSQL may end this one instead
            transaction.rollback()
            reseed.join(30)
        assert done == [26]  # the reseed went through, however PostgreSQL chose
    finally:
        reader.close()


def _lock_waits(inventory: Inventory) -> int:
    with inventory.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()
