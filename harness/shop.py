"""Test-only access to the tables, to set up and check what the inventory API must not be trusted to report."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import func, select, text, update

from sneakers23.db.models import ItemAvailabilityRow, OrderRow, ProductRow
from sneakers23.inventory import Inventory

availability = ItemAvailabilityRow.__table__
orders = OrderRow.__table__
products = ProductRow.__table__


def set_available(inventory: Inventory, item_id: int, count: int) -> None:
    """Restock (or empty) a size behind the inventory's back, as an operator's SQL would: a change
    with a new version, which no one publishes, so caches learn it only by anti-entropy."""
    with inventory.engine.begin() as connection:
        connection.execute(update(availability).where(availability.c.item_id == item_id)
                           .values(available_count=count, version=availability.c.version + 1))


def available(inventory: Inventory, item_id: int) -> int:
    with inventory.engine.connect() as connection:
        return connection.execute(
            select(availability.c.available_count).where(availability.c.item_id == item_id)
        ).scalar_one()


def availability_version(inventory: Inventory, item_id: int) -> int:
    with inventory.engine.connect() as connection:
        return connection.execute(select(availability.c.version).where(availability.c.item_id == item_id)).scalar_one()


def product_version(inventory: Inventory, product_id: int) -> int:
    with inventory.engine.connect() as connection:
        return connection.execute(select(products.c.version).where(products.c.id == product_id)).scalar_one()


def order_count(inventory: Inventory, item_id: int | None = None, shopper_id: str | None = None) -> int:
    query = select(func.count()).select_from(orders)
    if item_id is not None:
        query = query.where(orders.c.item_id == item_id)
    if shopper_id is not None:
        query = query.where(orders.c.shopper_id == shopper_id)
    with inventory.engine.connect() as connection:
        return connection.execute(query).scalar_one()


def all_counts(inventory: Inventory) -> dict[int, int]:
    with inventory.engine.connect() as connection:
        return dict(connection.execute(select(availability.c.item_id, availability.c.available_count)).all())


@contextmanager
def database_stalled(inventory: Inventory, item_id: int):
    """Another connection holds the size's row (PostgreSQL) or the write lock (SQLite) until the
    block ends: a sale of it waits meanwhile."""
    with inventory.engine.connect() as blocker:
        transaction = blocker.begin()  # (on SQLite, BEGIN IMMEDIATE: the write lock)
        if blocker.dialect.name == "postgresql":
            blocker.execute(text("SELECT 1 FROM item_availabilities WHERE item_id = :i FOR UPDATE"), {"i": item_id})
        try:
            yield
        finally:
            transaction.rollback()
