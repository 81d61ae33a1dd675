"""The original store's data: two products of thirteen sizes each, with random stock."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import Connection, delete, func, select, text, update

from sneakers23.db.models import (CartItemRow, CartRow, DrawEntryRow, DrawRow, ItemAvailabilityRow, ItemRow, OrderRow,
                                  ProductRow, ShopperProductPairsRow, WaitingPlaceRow, WaitingRoomRow)
from sneakers23.db.queries import count_products
from sneakers23.errors import AlreadySeeded

PRODUCTS = (
    # sku, order, brand, name, color, price_usd, image
    ("SHU6000", 0, "Snks 23", "Hop Man 3", "yellow/blue", 120, "hopman"),
    ("SHU6100", 1, "Asler", "Breezy Boost 600", "momentum", 140, "breezy"),
)
SIZES = tuple(f"{n / 2:g}" for n in range(12, 25))  # 6, 6.5, 7 … 12
OUT_OF_STOCK_PROBABILITY = 0.1
STOCK_RANGE = (201, 1200)

# Children first, so that deleting never breaks a foreign key. The carts stay (emptied, below).
_TABLES = (CartItemRow, OrderRow, ShopperProductPairsRow, DrawEntryRow, DrawRow, WaitingPlaceRow, WaitingRoomRow,
           ItemAvailabilityRow, ItemRow, ProductRow)


def seed(connection: Connection, random_seed: int | None = None, reset: bool = False) -> int:
    """Fill an empty database (or, with reset, an emptied one) in the caller's transaction.

    Returns the number of items created.
    """
    version = 1
    if count_products(connection):
        if not reset:
            raise AlreadySeeded("the database already holds products: pass --reset to replace them")
        # Versions only grow, even across a reseed: caches then take the new rows as changes.
        version = _highest_version(connection) + 1
        _empty(connection)
    rng = random.Random(random_seed)
    items = 0
    for sku, order, brand, name, color, price, image in PRODUCTS:
        product_id = connection.execute(
            ProductRow.__table__.insert()
            .values(sku=sku, order=order, brand=brand, name=name, color=color, price_usd=price,
                    main_image_url=f"/static/images/{image}.svg", released=False, version=version)
            .returning(ProductRow.__table__.c.id)
        ).scalar_one()
        for number, size in enumerate(SIZES, start=1):
            item_id = connection.execute(
                ItemRow.__table__.insert()
                .values(sku=f"{sku[:-2]}{number:02d}", size=size, product_id=product_id)
                .returning(ItemRow.__table__.c.id)
            ).scalar_one()
            count = 0 if rng.random() < OUT_OF_STOCK_PROBABILITY else rng.randint(*STOCK_RANGE)
            connection.execute(
                ItemAvailabilityRow.__table__.insert().values(item_id=item_id, available_count=count, version=version)
            )
            items += 1
    return items


def _highest_version(connection: Connection) -> int:
    return max(
        connection.execute(select(func.coalesce(func.max(model.__table__.c.version), 0))).scalar_one()
        for model in (ProductRow, ItemAvailabilityRow)
    )


def _empty(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Identities restart too, so that a reseeded store has the same ids (products 1–2, items 1–26).
        names = ", ".join(model.__tablename__ for model in _TABLES)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    else:
        for model in _TABLES:
            connection.execute(delete(model.__table__))  # SQLite rowids restart from the highest left: 0
    # The carts are emptied, not deleted, and each one's version moves on: the caches' anti-entropy
    # compares sums of versions, so a row that vanished would leave a cache holding a cart whose
    # version could hide a later change missed; an emptied cart is a change like any other, and
    # every open tab shows it.
    connection.execute(update(CartRow.__table__).values(version=CartRow.__table__.c.version + 1,
                                                        updated_at=datetime.now(timezone.utc)))
