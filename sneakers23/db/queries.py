"""Reads and writes of the shop's truth. Selling is decided here, by the database, atomically."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Engine, and_, exists, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from sneakers23.db import carts, draws, waiting_rooms
from sneakers23.db.models import ItemAvailabilityRow, ItemRow, OrderRow, ProductRow, ShopperProductPairsRow
from sneakers23.domain.catalog import Item, Product, complete_products
from sneakers23.domain.changes import (AvailabilityChanged, Change, ProductReleased, ReleaseScheduleChanged,
                                       product_state)
from sneakers23.domain.draws import entry_of_key, mode_change_refused
from sneakers23.domain.drops import DropMode, guests_refused, sign_in_for_a_scheduled_drop
from sneakers23.domain.fairness import commitment
from sneakers23.domain.purchases import (BoughtPair, PurchaseFacts, PurchaseResult, SizeOnSale, SoldUnit,
                                         answer_purchase, signed_in)
from sneakers23.errors import AlreadyReleased, DropModeRefused, NotFound, SalesBusy

products_t = ProductRow.__table__
items_t = ItemRow.__table__
availability_t = ItemAvailabilityRow.__table__
orders_t = OrderRow.__table__
pairs_t = ShopperProductPairsRow.__table__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


# --- reads -------------------------------------------------------------------------------------

def load_products(connection: Connection) -> list[Product]:
    """The complete products: every product with every item and its count, in display order."""
    products = [
        Product(
            id=row.id, sku=row.sku, order=row.order, brand=row.brand, name=row.name, color=row.color,
            price_usd=row.price_usd, main_image_url=row.main_image_url, released=bool(row.released),
            version=row.version, release_at=_utc(row.release_at), sign_in_required=bool(row.sign_in_required),
            drop_mode=DropMode(row.drop_mode),
        )
        for row in connection.execute(select(products_t))
    ]
    items = [
        Item(id=row.id, sku=row.sku, size=row.size, product_id=row.product_id,
             available_count=row.available_count, version=row.version)
        for row in connection.execute(
            select(items_t.c.id, items_t.c.sku, items_t.c.size, items_t.c.product_id,
                   availability_t.c.available_count, availability_t.c.version)
            .join(availability_t, availability_t.c.item_id == items_t.c.id)
        )
    ]
    return complete_products(products, items)


def count_products(connection: Connection) -> int:
    return connection.execute(select(func.count()).select_from(products_t)).scalar_one()


# --- release -----------------------------------------------------------------------------------

def release(connection: Connection, product_id: int) -> tuple[ProductReleased, bool]:
    """Release a product now (any release time set for it is void). Idempotent: releasing it again
    changes nothing and returns its state.

    Returns the change (with the row's version) and whether this call released it.
    """
    row = connection.execute(
        update(products_t)
        .where(products_t.c.id == product_id, products_t.c.released.is_(False))
        .values(released=True, release_at=None, version=products_t.c.version + 1, updated_at=_now())
        .returning(*PRODUCT_STATE)
    ).one_or_none()
    if row is not None:
        return _state_of(row), True
    return _product_state(connection, product_id), False


def product_row_state(connection: Connection, product_id: int) -> ProductReleased | ReleaseScheduleChanged:
    """The product's row as a change (NotFound for an unknown product)."""
    return _product_state(connection, product_id)


def _product_state(connection: Connection, product_id: int, lock: bool = False) -> ProductReleased | ReleaseScheduleChanged:
    """The product's state; with `lock`, its row is held until the commit (PostgreSQL's FOR UPDATE:
    a concurrent change of the product waits; SQLite's writers take turns anyway)."""
    query = select(*PRODUCT_STATE).where(products_t.c.id == product_id)
    row = connection.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound(f"there is no product {product_id}")
    return _state_of(row)


PRODUCT_STATE = (products_t.c.id, products_t.c.released, products_t.c.version, products_t.c.release_at,
                 products_t.c.sign_in_required, products_t.c.drop_mode)


def _state_of(row) -> ProductReleased | ReleaseScheduleChanged:
    return product_state(row.id, bool(row.released), row.version, _utc(row.release_at), bool(row.sign_in_required),
                         DropMode(row.drop_mode))


def schedule_release(connection: Connection, product_id: int, at: datetime | None) -> ReleaseScheduleChanged:
    """Set (or, with None, cancel) the moment an unreleased product goes on sale by itself. A drop
    scheduled sells to signed-in shoppers, unless the staff chose for it (domain/drops.py)."""
    who = connection.execute(
        select(products_t.c.released, products_t.c.sign_in_required, products_t.c.sign_in_chosen)
        .where(products_t.c.id == product_id).with_for_update()).one_or_none()
    if who is None:
        raise NotFound(f"there is no product {product_id}")
    if who.released:
        raise AlreadyReleased(f"product {product_id} is already released: there is nothing to schedule")
    required = bool(who.sign_in_required) if at is None else \
        sign_in_for_a_scheduled_drop(bool(who.sign_in_required), bool(who.sign_in_chosen))
    return _state_of(connection.execute(
        update(products_t)
        .where(products_t.c.id == product_id)
        .values(release_at=at, sign_in_required=required, version=products_t.c.version + 1, updated_at=_now())
        .returning(*PRODUCT_STATE)
    ).one())


def require_sign_in(connection: Connection, product_id: int, required: bool) -> ProductReleased | ReleaseScheduleChanged:
    """Whether only signed-in shoppers (with a verified address) may buy the product; its state after.
    The staff's choice is noted, so a drop scheduled later keeps it. Setting what is set already
    changes nothing else (the version stays). A queue or a draw stays for signed-in shoppers
    (domain/drops.py says why; the table's CHECK is the net)."""
    state = _product_state(connection, product_id, lock=True)  # (NotFound for an unknown product)
    refused = None if required else guests_refused(product_id, state.drop_mode)
    if refused is not None:
        raise DropModeRefused(refused)
    chosen = update(products_t).where(products_t.c.id == product_id).values(sign_in_chosen=True)
    if state.sign_in_required == required:  # (chosen all the same: a scheduled drop keeps it)
        connection.execute(chosen)
        return state
    return _state_of(connection.execute(
        chosen.values(sign_in_required=required, version=products_t.c.version + 1, updated_at=_now())
        .returning(*PRODUCT_STATE)
    ).one())


def set_drop_mode(connection: Connection, product_id: int, mode: DropMode,
                  seed: bytes | None = None) -> ProductReleased | ReleaseScheduleChanged:
    """How the product's pairs go to shoppers at its release; its state after. Only before the
    release; a queue or a draw sells to signed-in shoppers only, so it sets that too (going back to
    first come leaves it as it is). A draw or a queue gets its row, committed to `seed` (kept when it
    has one); a draw that shoppers entered, or a queue where they took places, stays one. Setting
    what is set already changes nothing."""
    state = _product_state(connection, product_id, lock=True)  # (NotFound for an unknown product)
    if state.released:
        raise AlreadyReleased(f"product {product_id} is already released: its drop mode stays {state.drop_mode}")
    entered = draws.entries_count(connection, product_id) if state.drop_mode is DropMode.DRAW else \
        waiting_rooms.places_count(connection, product_id) if state.drop_mode is DropMode.QUEUE else 0
    refused = mode_change_refused(product_id, state.drop_mode, mode, entered)
    if refused is not None:
        raise DropModeRefused(refused)
    if mode in (DropMode.DRAW, DropMode.QUEUE) and seed is None:
        raise ValueError(f"a {mode} needs a seed")
    if mode is DropMode.DRAW:
        draws.prepare(connection, product_id, seed, commitment(seed))
    elif state.drop_mode is DropMode.DRAW:
        draws.forget(connection, product_id)
    if mode is DropMode.QUEUE:
        waiting_rooms.prepare(connection, product_id, seed, commitment(seed))
    elif state.drop_mode is DropMode.QUEUE:
        waiting_rooms.forget(connection, product_id)
    if state.drop_mode is mode:
        return state
    return _state_of(connection.execute(
        update(products_t)
        .where(products_t.c.id == product_id)
        .values(drop_mode=str(mode), sign_in_required=True if mode.needs_sign_in else products_t.c.sign_in_required,
                version=products_t.c.version + 1, updated_at=_now())
        .returning(*PRODUCT_STATE)
    ).one())


def next_release_at(connection: Connection) -> datetime | None:
    """The earliest release time of the products not on sale yet (None: nothing is scheduled). A
    cheap read: the writer lock is taken only once it has come, and the release clock sleeps until it."""
    return _utc(connection.execute(
        select(func.min(products_t.c.release_at))
        .where(products_t.c.released.is_(False), products_t.c.release_at.is_not(None))
    ).scalar())


def on_sale_soon(connection: Connection, within: timedelta, now: datetime | None = None) -> list[int]:
    """The products on sale, and those whose release comes within `within`."""
    until = (now or _now()) + within
    return list(connection.execute(
        select(products_t.c.id)
        .where(products_t.c.released.is_(True) | (products_t.c.release_at.is_not(None) & (products_t.c.release_at <= until)))
        .order_by(products_t.c.id)).scalars())


def release_due(connection: Connection, now: datetime | None = None) -> list[ProductReleased]:
    """Release every product whose time has come. One atomic statement: whoever runs it, however
    often, and on however many nodes, each product is released once."""
    rows = connection.execute(
        update(products_t)
        .where(products_t.c.released.is_(False), products_t.c.release_at.is_not(None),
               products_t.c.release_at <= (now or _now()))
        .values(released=True, version=products_t.c.version + 1, updated_at=_now())
        .returning(*PRODUCT_STATE)
    ).all()
    return [_state_of(row) for row in rows]


# --- restock -----------------------------------------------------------------------------------

def restock(connection: Connection, item_id: int, count: int) -> AvailabilityChanged:
    """Add `count` pairs to a size."""
    row = connection.execute(
        update(availability_t)
        .where(availability_t.c.item_id == item_id)
        .values(available_count=availability_t.c.available_count + count, version=availability_t.c.version + 1,
                updated_at=_now())
        .returning(availability_t.c.available_count, availability_t.c.version)
    ).one_or_none()
    if row is None:
        raise NotFound(f"there is no item {item_id}")
    product_id = connection.execute(select(items_t.c.product_id).where(items_t.c.id == item_id)).scalar_one()
    return AvailabilityChanged(item_id, product_id, row.available_count, row.version)


# --- purchase ----------------------------------------------------------------------------------

PURCHASE_ATTEMPTS = 5  # reads and writes of one purchase, when what it read moved before it wrote


def purchase(
    engine: Engine, shopper_id: str, item_ids: list[int], idempotency_key: str | None, max_pairs_per_product: int
) -> PurchaseResult:
    """Sell one pair of each item to the shopper, all or nothing, in one transaction.

    The rows that decide it are read (the purchase made before with the key, the sizes, what the
    shopper holds) and the domain's rule answers (`answer_purchase`). A sale is then written behind
    guards: a shopper's counter that never passes the limit, a conditional decrement per size
    (`available_count > 0` and the product released), and unique indexes under the orders. So the
    database never sells a pair it does not have, whatever any cache believes. Where a guard trips,
    a concurrent purchase changed what was read: it rolls back and reads again (on SQLite, whose
    writers take turns, never; on PostgreSQL, rarely).
    """
    key = idempotency_key or uuid.uuid4().hex
    for _attempt in range(PURCHASE_ATTEMPTS):
        with engine.connect() as connection, connection.begin() as transaction:
            answer = _purchase_once(connection, shopper_id, item_ids, key, idempotency_key is not None,
                                    max_pairs_per_product)
            if answer is not None:
                return answer  # (committed: a sale, or nothing written)
            transaction.rollback()
    raise SalesBusy(f"sizes {sorted(set(item_ids))} are being bought by many at once: try again in a moment")


def _purchase_once(connection: Connection, shopper_id: str, item_ids: list[int], key: str, keyed: bool,
                   max_pairs: int) -> PurchaseResult | None:
    """One try: the answer, or None when what it read moved before it wrote."""
    facts = purchase_facts(connection, shopper_id, item_ids, key if keyed else None)
    answer = answer_purchase(item_ids, facts, max_pairs)
    if answer is not None:
        return answer
    try:
        units = sell(connection, shopper_id, item_ids, key, facts, max_pairs)
    except IntegrityError:  # a concurrent purchase of the same size, or with the same key, came first
        return None
    return None if units is None else PurchaseResult.sold(units)


def purchase_facts(connection: Connection, shopper_id: str, item_ids: list[int], key: str | None) -> PurchaseFacts:
    """What decides a purchase, as the database holds it now. Each statement may see a newer
    commit than the one before it (PostgreSQL's read committed): the purchase made before with the
    key is read last, so that a sale with this key that any earlier read saw is seen there too, and
    replayed (else its size and pairs would refuse the purchase that made them)."""
    sizes = {
        row.id: SizeOnSale(row.product_id, bool(row.released), row.available_count, bool(row.sign_in_required),
                           row.drop_mode == DropMode.DRAW, row.drop_mode == DropMode.QUEUE)
        for row in connection.execute(
            select(items_t.c.id, items_t.c.product_id, products_t.c.released, availability_t.c.available_count,
                   products_t.c.sign_in_required, products_t.c.drop_mode)
            .join(products_t, products_t.c.id == items_t.c.product_id)
            .join(availability_t, availability_t.c.item_id == items_t.c.id)
            .where(items_t.c.id.in_(set(item_ids))))
    }
    products = {size.product_id for size in sizes.values()}
    pairs_held = dict(connection.execute(
        select(pairs_t.c.product_id, pairs_t.c.pairs)
        .where(pairs_t.c.shopper_id == shopper_id, pairs_t.c.product_id.in_(products))).all()) if products else {}
    sizes_held = set(_sizes_owned(connection, shopper_id, list(sizes)))
    won = draws.won_sizes(connection, shopper_id, {size.product_id for size in sizes.values() if size.drawn}, key)
    admitted = waiting_rooms.live_admissions(connection, shopper_id,
                                             {size.product_id for size in sizes.values() if size.queued})
    earlier = _earlier(connection, shopper_id, key) if key is not None else None
    return PurchaseFacts(sizes, pairs_held, sizes_held, earlier, signed_in(shopper_id), won, admitted)


def sell(connection: Connection, shopper_id: str, item_ids: list[int], key: str, facts: PurchaseFacts,
         max_pairs: int) -> tuple[SoldUnit, ...] | None:
    """Write the sale the rule allowed: the shopper's counters (locked until commit, in product
    order), one conditional decrement per size (in item order: a fixed lock order), the orders.
    None when a guard trips: what was read has moved (the caller rolls back and reads again)."""
    wanted: dict[int, int] = {}
    for item_id in item_ids:
        product_id = facts.sizes[item_id].product_id
        wanted[product_id] = wanted.get(product_id, 0) + 1
    for product_id in sorted({facts.sizes[item_id].product_id for item_id in item_ids if facts.sizes[item_id].queued}):
        if not waiting_rooms.use_admissions(connection, product_id, {shopper_id}):
            return None  # (its turn ended, or another purchase used it, meanwhile: read again)
    for product_id in sorted(wanted):
        if not add_pairs(connection, shopper_id, product_id, wanted[product_id], max_pairs):
            return None
    won = sorted(item_id for item_id in item_ids if facts.sizes[item_id].drawn)
    for product_id in sorted({facts.sizes[item_id].product_id for item_id in won}):
        wins = [(entry_of_key(key), shopper_id, item_id) for item_id in won if facts.sizes[item_id].product_id == product_id]
        if draws.mark_bought(connection, product_id, wins) < len(wins):
            return None  # (the winner's pair was bought meanwhile: read again, and replay it)
    after: dict[int, tuple[int, int]] = {}
    for item_id in sorted(item_ids):
        size = facts.sizes[item_id]
        sold = decrement(connection, item_id, size.product_id, 1, guests=not facts.signed_in, by_draw=size.drawn,
                         admitted=size.queued)
        if sold is None:
            return None
        after[item_id] = (sold.available_count, sold.version)
    now = _now()
    units = []
    for line, item_id in enumerate(item_ids):
        count, version = after[item_id]
        product_id = facts.sizes[item_id].product_id
        order_id = connection.execute(
            orders_t.insert()
            .values(shopper_id=shopper_id, item_id=item_id, product_id=product_id, idempotency_key=key, line=line,
                    available_count_after=count, version_after=version, inserted_at=now)
            .returning(orders_t.c.id)
        ).scalar_one()
        units.append(SoldUnit(order_id, item_id, product_id, count, version))
    return tuple(units)


def add_pairs(connection: Connection, shopper_id: str, product_id: int, wanted: int, max_pairs: int) -> bool:
    """Count `wanted` more pairs of the product for the shopper, unless that passes the limit."""
    return wanted <= max_pairs and add_pairs_of_many(connection, product_id, {shopper_id: wanted}, max_pairs) == 1


# On PostgreSQL the shoppers travel as arrays, in a statement whose text never changes with their
# number (a statement of 200 VALUES rows cost more to build than to run).
_PAIRS_FROM_ARRAYS = text(
    "INSERT INTO shopper_product_pairs (shopper_id, product_id, pairs) "
    "SELECT shopper_id, :product_id, pairs FROM unnest(CAST(:shoppers AS text[]), CAST(:pairs AS int[])) "
    "AS wanted(shopper_id, pairs) "
    "ON CONFLICT (shopper_id, product_id) DO UPDATE SET pairs = shopper_product_pairs.pairs + excluded.pairs "
    "WHERE shopper_product_pairs.pairs + excluded.pairs <= :max_pairs RETURNING shopper_id")


def add_pairs_of_many(connection: Connection, product_id: int, pairs: dict[str, int], max_pairs: int) -> int:
    """Count more pairs of the product for several shoppers in one statement, each unless that
    passes the limit (rows taken in sorted order); returns how many shoppers' counts moved."""
    shoppers = sorted(pairs)
    if connection.dialect.name == "postgresql":
        return len(connection.execute(_PAIRS_FROM_ARRAYS, {
            "product_id": product_id, "shoppers": shoppers, "pairs": [pairs[s] for s in shoppers],
            "max_pairs": max_pairs}).all())
    statement = sqlite.insert(pairs_t).values(
        [{"shopper_id": shopper_id, "product_id": product_id, "pairs": pairs[shopper_id]} for shopper_id in shoppers])
    statement = statement.on_conflict_do_update(
        index_elements=[pairs_t.c.shopper_id, pairs_t.c.product_id],
        set_={"pairs": pairs_t.c.pairs + statement.excluded.pairs},
        where=pairs_t.c.pairs + statement.excluded.pairs <= max_pairs,
    ).returning(pairs_t.c.shopper_id)
    return len(connection.execute(statement).all())


def decrement(connection: Connection, item_id: int, product_id: int, count: int, guests: bool = True,
              by_draw: bool = False, admitted: bool = False):
    """Take `count` pairs of a size, if it has them and its product is released (and, when a buyer
    is a guest, sold to guests; unless the sale is a draw's, its product not sold by draw; unless
    its buyers were let in, its product not sold by queue): the conditional decrement that decides
    every sale. Returns the row's count and version after, or None. (A draw's sale is guarded by
    its winners' entries, a queue's by its buyers' admissions, marked bought in its transaction.)"""
    on_sale = and_(products_t.c.id == product_id, products_t.c.released.is_(True),
                   *([products_t.c.sign_in_required.is_(False)] if guests else []),
                   *([] if by_draw else [products_t.c.drop_mode != str(DropMode.DRAW)]),
                   *([] if admitted else [products_t.c.drop_mode != str(DropMode.QUEUE)]))
    return connection.execute(
        update(availability_t)
        .where(availability_t.c.item_id == item_id, availability_t.c.available_count >= count, exists().where(on_sale))
        .values(available_count=availability_t.c.available_count - count,
                version=availability_t.c.version + 1, updated_at=_now())
        .returning(availability_t.c.available_count, availability_t.c.version)
    ).one_or_none()


def _sizes_owned(connection: Connection, shopper_id: str, item_ids: list[int]) -> list[int]:
    owned = set(connection.execute(
        select(orders_t.c.item_id).where(orders_t.c.shopper_id == shopper_id, orders_t.c.item_id.in_(set(item_ids)))
    ).scalars())
    return [item_id for item_id in item_ids if item_id in owned]


def _earlier(connection: Connection, shopper_id: str, key: str) -> tuple[SoldUnit, ...] | None:
    """The pairs of the purchase made with this key, in line order; None when there was none."""
    rows = connection.execute(
        select(orders_t)
        .where(orders_t.c.shopper_id == shopper_id, orders_t.c.idempotency_key == key)
        .order_by(orders_t.c.line)
    ).all()
    if not rows:
        return None
    return tuple(SoldUnit(r.id, r.item_id, r.product_id, r.available_count_after, r.version_after) for r in rows)


def shopper_orders(connection: Connection, shopper_id: str) -> list[BoughtPair]:
    return [BoughtPair(row.id, row.item_id, row.product_id, row.idempotency_key, _utc(row.inserted_at))
            for row in connection.execute(
                select(orders_t.c.id, orders_t.c.item_id, orders_t.c.product_id, orders_t.c.idempotency_key,
                       orders_t.c.inserted_at)
                .where(orders_t.c.shopper_id == shopper_id).order_by(orders_t.c.id.desc()))]


# --- versions, for the node caches' anti-entropy ----------------------------------------------------

def version_totals(connection: Connection) -> tuple[int, int]:
    """The sums of the rows' versions: of the products and sizes, and of the carts that hold
    something (as memory keeps them). A version grows with each change, so a cache whose own
    totals are equal holds every change; a cache never holds a product's or a size's version the
    database lacks (a cart's, it may: one emptied here but not yet there)."""
    products_sum = select(func.coalesce(func.sum(products_t.c.version), 0)).scalar_subquery()
    availability_sum = select(func.coalesce(func.sum(availability_t.c.version), 0)).scalar_subquery()
    inventory, held_carts = connection.execute(select(products_sum + availability_sum, carts.version_sum(connection))).one()
    return int(inventory), int(held_carts)


def version_total(connection: Connection) -> int:
    return sum(version_totals(connection))


def current_changes(connection: Connection, carts_changed_since: datetime | None = None) -> list[Change]:
    """Every row's current state as a change, for a cache to apply what it missed (of the carts,
    those changed since the moment given, if one is, empty ones too; else every cart that holds
    something)."""
    changes: list[Change] = [_state_of(row) for row in connection.execute(select(*PRODUCT_STATE))]
    changes += [
        AvailabilityChanged(item_id=row.item_id, product_id=row.product_id,
                            available_count=row.available_count, version=row.version)
        for row in connection.execute(
            select(availability_t.c.item_id, items_t.c.product_id, availability_t.c.available_count,
                   availability_t.c.version)
            .join(items_t, items_t.c.id == availability_t.c.item_id)
        )
    ]
    return changes + carts.all_carts(connection, carts_changed_since, holding_only=carts_changed_since is None)


# --- audit, for the mock drops' invariant check ---------------------------------------------------

def stock_audit(connection: Connection) -> tuple[dict[int, int], dict[int, int], int, int]:
    counts = dict(connection.execute(select(availability_t.c.item_id, availability_t.c.available_count)).all())
    orders = {item_id: 0 for item_id in counts}
    orders.update(connection.execute(
        select(orders_t.c.item_id, func.count()).group_by(orders_t.c.item_id)).all())

    def most(*columns) -> int:
        per_group = select(func.count().label("n")).select_from(orders_t).group_by(*columns).subquery()
        return int(connection.execute(select(func.coalesce(func.max(per_group.c.n), 0))).scalar_one())

    return (counts, orders, most(orders_t.c.shopper_id, orders_t.c.item_id),
            most(orders_t.c.shopper_id, orders_t.c.product_id))
