"""Carts in the database: where a shopper's cart lives, so that no node's loss can take it.

Changes come in batches (a web replica groups the changes its tabs ask for while one batch
commits): the batch locks its carts first (on PostgreSQL, in the shoppers' order; SQLite writers
take turns anyway), so one shopper's tabs take turns and two adds cannot pass the pairs limit
together. Carts change at drop time as often as pairs sell: a batch is about nine statements and
one commit, whatever its size.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sneakers23.db.models import (CartItemRow, CartRow, ItemAvailabilityRow, ItemRow, OrderRow, ProductRow,
                                  ShopperProductPairsRow)
from sneakers23.domain.carts import CartRefusal, CartRequest, HeldCart, SizeFacts, settle
from sneakers23.domain.changes import Cart
from sneakers23.domain.drops import DropMode

carts_t = CartRow.__table__
cart_items_t = CartItemRow.__table__
items_t = ItemRow.__table__
products_t = ProductRow.__table__
availability_t = ItemAvailabilityRow.__table__
orders_t = OrderRow.__table__
pairs_t = ShopperProductPairsRow.__table__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cart(connection: Connection, shopper_id: str) -> Cart:
    carts = _carts_where(connection, carts_t.c.shopper_id == shopper_id)
    return carts[0] if carts else Cart(shopper_id, 0, ())


def all_carts(connection: Connection, changed_since: datetime | None = None,
              holding_only: bool = False) -> list[Cart]:
    """Every cart, or those changed since a moment (empty ones too: a cache forgets them), or
    those that hold something (what memory keeps: the empty carts of every shopper who ever
    held a pair are left out of anti-entropy's full reads)."""
    if holding_only:
        return _carts_where(connection, carts_t.c.shopper_id.in_(select(cart_items_t.c.shopper_id).distinct()))
    return _carts_where(connection, None if changed_since is None else carts_t.c.updated_at >= changed_since)


def _carts_where(connection: Connection, condition) -> list[Cart]:
    """Carts with their items, in one statement: a version and the items it goes with are read at
    the same moment (two statements may see a change committed between them)."""
    query = (select(carts_t.c.shopper_id, carts_t.c.version, cart_items_t.c.item_id)
             .outerjoin(cart_items_t, cart_items_t.c.shopper_id == carts_t.c.shopper_id)
             .order_by(carts_t.c.shopper_id, cart_items_t.c.added_at.desc(), cart_items_t.c.item_id))
    if condition is not None:
        query = query.where(condition)
    carts: dict[str, tuple[int, list[int]]] = {}
    for shopper_id, version, item_id in connection.execute(query):
        items = carts.setdefault(shopper_id, (version, []))[1]
        if item_id is not None:
            items.append(item_id)
    return [Cart(shopper_id, version, tuple(items)) for shopper_id, (version, items) in carts.items()]


def version_sum(connection: Connection):
    """The carts' part of the database's version total (a scalar subquery): the carts that hold
    something, as memory keeps them (found from the sizes held, not from every cart ever made)."""
    holding = select(cart_items_t.c.shopper_id).distinct()
    return select(func.coalesce(func.sum(carts_t.c.version), 0)).where(carts_t.c.shopper_id.in_(holding)).scalar_subquery()


def _lock(connection: Connection, shopper_ids: list[str]) -> dict[str, int]:
    """Make the carts that do not exist yet, and lock every one of them until the commit, in one
    statement that takes the rows in the shoppers' order (so two batches never wait on each
    other in a circle); their versions."""
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(carts_t)
    insert = insert.values([{"shopper_id": s, "version": 0, "updated_at": _now()} for s in shopper_ids])
    rows = connection.execute(insert.on_conflict_do_update(
        index_elements=[carts_t.c.shopper_id], set_={"version": carts_t.c.version},  # (locks, changes nothing)
    ).returning(carts_t.c.shopper_id, carts_t.c.version)).all()
    return dict(rows)


def _held(connection: Connection, shopper_ids: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Each cart's (item, product) pairs, newest first."""
    held: dict[str, list[tuple[int, int]]] = {shopper_id: [] for shopper_id in shopper_ids}
    for shopper_id, item_id, product_id in connection.execute(
            select(cart_items_t.c.shopper_id, cart_items_t.c.item_id, items_t.c.product_id)
            .join(items_t, items_t.c.id == cart_items_t.c.item_id)
            .where(cart_items_t.c.shopper_id.in_(shopper_ids))
            .order_by(cart_items_t.c.shopper_id, cart_items_t.c.added_at.desc(), cart_items_t.c.item_id)):
        held[shopper_id].append((item_id, product_id))
    return held


def _sizes(connection: Connection, item_ids: set[int]) -> dict[int, SizeFacts]:
    if not item_ids:
        return {}
    return {row.id: SizeFacts(row.product_id, bool(row.released), row.available_count, row.drop_mode == DropMode.DRAW)
            for row in connection.execute(
        select(items_t.c.id, items_t.c.product_id, products_t.c.released, availability_t.c.available_count,
               products_t.c.drop_mode)
        .join(products_t, products_t.c.id == items_t.c.product_id)
        .join(availability_t, availability_t.c.item_id == items_t.c.id)
        .where(items_t.c.id.in_(item_ids)))}


def _bought(connection: Connection, shopper_ids: list[str], item_ids: set[int]) -> tuple[dict, set]:
    """The pairs each shopper bought of each product, and the sizes among `item_ids` each bought."""
    if not item_ids:
        return {}, set()
    pairs = {(row.shopper_id, row.product_id): row.pairs for row in connection.execute(
        select(pairs_t).where(pairs_t.c.shopper_id.in_(shopper_ids)))}
    owned = {tuple(row) for row in connection.execute(
        select(orders_t.c.shopper_id, orders_t.c.item_id)
        .where(orders_t.c.shopper_id.in_(shopper_ids), orders_t.c.item_id.in_(item_ids)))}
    return pairs, owned


def change_carts(connection: Connection, requests: list[CartRequest],
                 max_pairs: int) -> tuple[list[Cart | CartRefusal], list[Cart]]:
    """Settle a batch of cart changes in the caller's transaction: lock the carts, read what the
    rules need, decide (domain.carts.settle), write the differences. About nine statements,
    whatever the batch's size. Returns each change's outcome, and the carts it changed (a change
    that changes nothing writes nothing, and has nothing to publish)."""
    shopper_ids = sorted({request.shopper_id for request in requests})
    versions = _lock(connection, shopper_ids)
    held = _held(connection, shopper_ids)
    adds = {request.add for request in requests if request.add is not None}
    bought, owned = _bought(connection, shopper_ids, adds)
    carts = {shopper_id: HeldCart(versions[shopper_id], list(held[shopper_id])) for shopper_id in shopper_ids}
    outcomes = settle(requests, carts, _sizes(connection, adds), bought, owned, max_pairs)
    _write(connection, versions, held, carts)
    changed = [cart.state(shopper_id) for shopper_id, cart in carts.items() if cart.version != versions[shopper_id]]
    # A cart the batch made only to lock it, and left empty at version 0, is no cart at all: gone
    # again, so that a removal for a shopper who never had a cart leaves nothing behind.
    made_for_nothing = [s for s, cart in carts.items() if cart.version == 0 and not cart.held and not held[s]]
    if made_for_nothing:
        connection.execute(delete(carts_t).where(carts_t.c.shopper_id.in_(made_for_nothing)))
    return outcomes, changed


def _write(connection: Connection, versions_before: dict[str, int], before: dict[str, list[tuple[int, int]]],
           after: dict[str, HeldCart]) -> None:
    inserts, deletes, versions = [], [], []
    now = _now()
    for shopper_id, cart in after.items():
        if cart.version == versions_before[shopper_id]:
            continue  # every change to it was refused (or took out what was not in it)
        old = {item for item, _product in before[shopper_id]}
        new = [item for item, _product in cart.held]
        versions.append({"who": shopper_id, "version": cart.version, "at": now})
        deletes += [{"who": shopper_id, "item": item} for item in old - set(new)]
        # Newest first is by the time added: the batch's adds a microsecond apart, in their order.
        added = [item for item in new if item not in old]
        inserts += [{"shopper_id": shopper_id, "item_id": item, "added_at": now + timedelta(microseconds=len(added) - n)}
                    for n, item in enumerate(added)]
    if deletes:
        connection.execute(delete(cart_items_t).where(cart_items_t.c.shopper_id == bindparam("who"),
                                                      cart_items_t.c.item_id == bindparam("item")), deletes)
    if inserts:
        connection.execute(cart_items_t.insert(), inserts)
    if versions:
        connection.execute(update(carts_t).where(carts_t.c.shopper_id == bindparam("who"))
                           .values(version=bindparam("version"), updated_at=bindparam("at")), versions)


def expire(connection: Connection, idle_before: datetime, limit: int) -> list[Cart]:
    """In the caller's transaction: empty at most `limit` of the carts that hold something and
    were left untouched since `idle_before`. Returns the emptied carts, to publish (memory forgets
    them). The rows stay: a cart's version must never start again (its tabs show the newest
    version they have seen, and its checkout key is made of it)."""
    idle = select(carts_t.c.shopper_id).where(carts_t.c.updated_at < idle_before, _holding()).limit(limit)
    # One statement that takes each row's lock and checks its time again after any wait: a change
    # that commits first moves `updated_at` on, and the cart is not idle any more.
    return _empty(connection, carts_t.c.shopper_id.in_(idle.scalar_subquery()), carts_t.c.updated_at < idle_before)


def empty(connection: Connection, shopper_id: str) -> list[Cart]:
    """In the caller's transaction: empty one shopper's cart (an account the staff lock); the
    emptied cart to publish, if it held anything."""
    return _empty(connection, carts_t.c.shopper_id == shopper_id, _holding())


def _holding():
    return select(cart_items_t.c.shopper_id).where(cart_items_t.c.shopper_id == carts_t.c.shopper_id).exists()


def _empty(connection: Connection, *where) -> list[Cart]:
    emptied = connection.execute(
        update(carts_t).where(*where).values(version=carts_t.c.version + 1, updated_at=_now())
        .returning(carts_t.c.shopper_id, carts_t.c.version)).all()
    if emptied:
        connection.execute(delete(cart_items_t).where(cart_items_t.c.shopper_id.in_([row[0] for row in emptied])))
    return [Cart(shopper_id, version, ()) for shopper_id, version in emptied]
