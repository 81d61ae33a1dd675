"""A queued drop's rows: its waiting room (commitment, record, pace, the line's version) and each
account's place (domain/waiting_room.py has the rules; inventory/waiting_rooms.py keeps the room).

The keeper is the only writer of numbers, admissions and expiries; a shopper's join inserts its
place, and a purchase marks its admission bought, in the sale's transaction (`use_admissions`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from sqlalchemy import Connection, Integer, bindparam, cast, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sneakers23.db.engine import in_batches
from sneakers23.db.models import ItemAvailabilityRow, ItemRow, OrderRow, ProductRow, WaitingPlaceRow, WaitingRoomRow
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import ShuffleRecord
from sneakers23.domain.waiting_room import LinePlace, Stage

rooms_t = WaitingRoomRow.__table__
places_t = WaitingPlaceRow.__table__
products_t = ProductRow.__table__
items_t = ItemRow.__table__
availability_t = ItemAvailabilityRow.__table__
orders_t = OrderRow.__table__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def _seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


# --- the room ---------------------------------------------------------------------------------

def prepare(connection: Connection, product_id: int, seed: bytes, commitment: str) -> str:
    """The product's waiting room, made if it has none; its commitment."""
    held = connection.execute(select(rooms_t.c.commitment).where(rooms_t.c.product_id == product_id)).scalar()
    if held is not None:
        return held
    connection.execute(insert(rooms_t).values(product_id=product_id, seed=seed.hex(), commitment=commitment,
                                              version=1, inserted_at=_now()))
    return commitment


def places_count(connection: Connection, product_id: int) -> int:
    return connection.execute(select(func.count()).select_from(places_t)
                              .where(places_t.c.product_id == product_id)).scalar_one()


def pre_queue_count(connection: Connection, product_id: int) -> int:
    return connection.execute(select(func.count()).select_from(places_t).where(
        places_t.c.product_id == product_id, places_t.c.stage == str(Stage.PRE_QUEUE))).scalar_one()


def forget(connection: Connection, product_id: int) -> None:
    """The product's waiting room, gone (nobody holds a place: the caller checked, under the
    product's lock)."""
    connection.execute(delete(rooms_t).where(rooms_t.c.product_id == product_id))


class Room:
    """A waiting room's row, as its keeper and the product page read it (the record, which may be
    long, only where it is asked for)."""

    def __init__(self, row, record: str | None = None):
        self.product_id: int = row.product_id
        self.seed = bytes.fromhex(row.seed)
        self.commitment: str = row.commitment
        self.record = None if record is None else ShuffleRecord.from_dict(json.loads(record))
        self.opened_at = _seconds(row.opened_at)
        self.pace_per_minute: float | None = row.pace_per_minute
        self.version: int = row.version
        self.released = bool(row.released)
        self.release_at = _seconds(row.release_at)  # (None once released, or never scheduled)


_ROOM = (rooms_t.c.product_id, rooms_t.c.seed, rooms_t.c.commitment, rooms_t.c.opened_at,
         rooms_t.c.pace_per_minute, rooms_t.c.version, products_t.c.released, products_t.c.release_at)


def room(connection: Connection, product_id: int, lock: bool = False, with_record: bool = True) -> Room | None:
    """The waiting room of a product still sold by queue, with its record unless left out (None:
    no such room). With `lock`, its row is held until the commit (PostgreSQL: a second keeper, left
    over from a lost node, waits, then finds the room moved on)."""
    columns = (*_ROOM, rooms_t.c.record) if with_record else _ROOM
    query = (select(*columns).join(products_t, products_t.c.id == rooms_t.c.product_id)
             .where(rooms_t.c.product_id == product_id, products_t.c.drop_mode == str(DropMode.QUEUE)))
    # (FOR NO KEY UPDATE: a join's foreign key check, FOR KEY SHARE, does not wait for the keeper)
    row = connection.execute(query.with_for_update(of=rooms_t, key_share=True) if lock else query).one_or_none()
    return None if row is None else Room(row, row.record if with_record else None)


def rooms_to_keep(connection: Connection) -> list[Room]:
    """The rooms of the products sold by queue whose release is scheduled or made (no records)."""
    return [Room(row) for row in connection.execute(
        select(*_ROOM).join(products_t, products_t.c.id == rooms_t.c.product_id)
        .where(products_t.c.drop_mode == str(DropMode.QUEUE),
               products_t.c.released.is_(True) | products_t.c.release_at.is_not(None))
        .order_by(rooms_t.c.product_id))]


class KeeperBehind(Exception):
    """The room's rows moved on under this keeper (another wrote them): it reads them again."""


def set_pace(connection: Connection, product_id: int, pace_per_minute: float | None) -> bool:
    """The staff's pace (None: the default); False for a product with no waiting room."""
    return connection.execute(update(rooms_t).where(rooms_t.c.product_id == product_id)
                              .values(pace_per_minute=pace_per_minute)).rowcount == 1


def moved(connection: Connection, product_id: int) -> int:
    """The line moved: its new version, past the one before and past the clock's milliseconds (so a
    room made again, after a reseed, never falls behind what the caches hold of the one before)."""
    held = connection.execute(select(rooms_t.c.version).where(rooms_t.c.product_id == product_id)).scalar_one()
    version = max(held + 1, int(time.time() * 1000))
    connection.execute(update(rooms_t).where(rooms_t.c.product_id == product_id).values(version=version))
    return version


def opened(connection: Connection, product_id: int, record: ShuffleRecord, at: float) -> None:
    """The release came: the pre-queue shuffled into the line, by the record, which publishes the
    seed (each account's number in it is written after, by `numbered`: the record gives them all)."""
    done = connection.execute(update(rooms_t).where(rooms_t.c.product_id == product_id, rooms_t.c.opened_at.is_(None))
                              .values(record=json.dumps(record.as_dict()), opened_at=_moment(at))).rowcount
    if done != 1:
        raise KeeperBehind(f"product {product_id}'s waiting room was opened already")


def numbered(connection: Connection, product_id: int, numbers: dict[str, int]) -> None:
    """Accounts let into the line, with their numbers (a place numbered already keeps its number and
    its stage: a number is given once; one taken out, by a lock, stays out)."""
    if not numbers:
        return
    # One statement for them all, the numbers sent as one JSON object (account -> number): at the
    # release, 10,000 rows' parameters built one by one took half of the keeper's tick (148 of
    # 309 ms; now 30 ms, docs/performance.md). The object is made a table first (MATERIALIZED):
    # SQLite would otherwise walk the places by an index and scan the whole JSON for each (8 s).
    if connection.dialect.name == "postgresql":
        pairs = func.jsonb_each_text(bindparam("numbers", numbers, type_=postgresql.JSONB)).table_valued("key", "value")
        number = cast(pairs.c.value, Integer)
    else:
        pairs = func.json_each(json.dumps(numbers)).table_valued("key", "value")
        number = pairs.c.value
    given = select(pairs.c.key.label("account"), number.label("number")).cte("given").prefix_with("MATERIALIZED")
    connection.execute(
        update(places_t).where(places_t.c.product_id == product_id, places_t.c.shopper_id == given.c.account,
                               places_t.c.number.is_(None),
                               places_t.c.stage.in_([str(Stage.PRE_QUEUE), str(Stage.QUEUE)]))
        .values(stage=str(Stage.QUEUE), number=given.c.number, updated_at=_now()))


# --- places -----------------------------------------------------------------------------------

def proof_used(connection: Connection, proof: str | None) -> bool:
    return proof is not None and connection.execute(
        select(places_t.c.id).where(places_t.c.proof == proof)).first() is not None


def join(connection: Connection, product_id: int, shopper_id: str, entry_id: str, proof: str | None = None) -> bool:
    """The account's place in the product's waiting room (in the pre-queue before the release, in
    line after it); False when it had one already (the caller reads it) or the product is not a
    queue whose release is scheduled or made (the guard under the caller's rule: on PostgreSQL
    the product's row is shared-locked, so a release waits for the join's commit, and no place
    joins the pre-queue after the shuffle), or its proof of work took another place meanwhile (the
    unique index)."""
    sold_by_queue = select(products_t.c.released).where(
        products_t.c.id == product_id, products_t.c.drop_mode == str(DropMode.QUEUE),
        products_t.c.released.is_(True) | products_t.c.release_at.is_not(None))
    if connection.dialect.name == "postgresql":
        sold_by_queue = sold_by_queue.with_for_update(read=True)
    released = connection.execute(sold_by_queue).scalar()
    if released is None:
        return False
    made = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(places_t).values(
        product_id=product_id, shopper_id=shopper_id, entry_id=entry_id, proof=proof,
        stage=str(Stage.QUEUE if released else Stage.PRE_QUEUE), joined_at=_now(), updated_at=_now())
    return connection.execute(made.on_conflict_do_nothing()).rowcount == 1  # (one per account)


_PLACE = (places_t.c.id, places_t.c.shopper_id, places_t.c.entry_id, places_t.c.stage, places_t.c.number,
          places_t.c.until)


def _place(row) -> LinePlace:
    return LinePlace(row.shopper_id, row.entry_id, Stage(row.stage), row.number, _seconds(row.until))


def place_of(connection: Connection, product_id: int, shopper_id: str) -> LinePlace | None:
    row = connection.execute(select(*_PLACE).where(places_t.c.product_id == product_id,
                                                   places_t.c.shopper_id == shopper_id)).one_or_none()
    return None if row is None else _place(row)


def places_of(connection: Connection, product_id: int, shopper_ids: list[str]) -> dict[str, LinePlace]:
    found: dict[str, LinePlace] = {}
    for batch in in_batches(shopper_ids):
        for row in connection.execute(select(*_PLACE).where(places_t.c.product_id == product_id,
                                                            places_t.c.shopper_id.in_(batch))):
            found[row.shopper_id] = _place(row)
    return found


def places_to_take(connection: Connection, product_id: int, since: datetime | None) -> list[LinePlace]:
    """The places the keeper has yet to take in: in the pre-queue, or in line with no number yet,
    joined since `since` (None: whenever), in arrival order. (A window of time, not the last id
    read: PostgreSQL hands ids out at the insert, and a join may commit after a later one.)"""
    query = select(*_PLACE).where(places_t.c.product_id == product_id,
                                  (places_t.c.stage == str(Stage.PRE_QUEUE))
                                  | ((places_t.c.stage == str(Stage.QUEUE)) & places_t.c.number.is_(None)))
    if since is not None:
        query = query.where(places_t.c.joined_at >= since)
    return [_place(row) for row in connection.execute(query.order_by(places_t.c.id))]


def sold_outside_turns(connection: Connection, product_id: int) -> int:
    """Pairs of the product in the orders of accounts its waiting room never let in (no place
    admitted, nor bought in its turn): none, where the store keeps its rule."""
    sizes = select(items_t.c.id).where(items_t.c.product_id == product_id)
    let_in = select(places_t.c.shopper_id).where(places_t.c.product_id == product_id,
                                                 places_t.c.stage.in_([str(Stage.ADMITTED), str(Stage.BOUGHT)]))
    return connection.execute(select(func.count()).select_from(orders_t).where(
        orders_t.c.item_id.in_(sizes), orders_t.c.shopper_id.not_in(let_in))).scalar_one()


def places(connection: Connection, product_id: int) -> list[LinePlace]:
    """Every place of the room, in arrival order (what a keeper restores its room from)."""
    return [_place(row) for row in connection.execute(
        select(*_PLACE).where(places_t.c.product_id == product_id).order_by(places_t.c.id))]


def admitted(connection: Connection, product_id: int, until: dict[str, float]) -> None:
    """Accounts let in, each until its window's end."""
    if not until:
        return
    now = _now()
    connection.execute(
        update(places_t).where(places_t.c.product_id == product_id, places_t.c.shopper_id == bindparam("account"),
                               places_t.c.stage == str(Stage.QUEUE))
        .values(stage=str(Stage.ADMITTED), until=bindparam("end"), updated_at=now),
        [{"account": shopper_id, "end": _moment(end)} for shopper_id, end in until.items()])


def expired(connection: Connection, product_id: int, accounts: list[str]) -> set[str]:
    """Admissions whose window passed unused; returns those that were still unused (one used
    meanwhile was bought: it stays so)."""
    ended: set[str] = set()
    for batch in in_batches(accounts):
        ended.update(connection.execute(
            update(places_t).where(places_t.c.product_id == product_id, places_t.c.shopper_id.in_(batch),
                                   places_t.c.stage == str(Stage.ADMITTED))
            .values(stage=str(Stage.EXPIRED), updated_at=_now()).returning(places_t.c.shopper_id)).scalars())
    return ended


def bought_among(connection: Connection, product_id: int, accounts: list[str]) -> set[str]:
    """Which of these admissions were used by a purchase."""
    used: set[str] = set()
    for batch in in_batches(accounts):
        used.update(connection.execute(select(places_t.c.shopper_id).where(
            places_t.c.product_id == product_id, places_t.c.shopper_id.in_(batch),
            places_t.c.stage == str(Stage.BOUGHT))).scalars())
    return used


def pairs_left(connection: Connection, product_id: int) -> int:
    return connection.execute(
        select(func.coalesce(func.sum(availability_t.c.available_count), 0))
        .join(items_t, items_t.c.id == availability_t.c.item_id)
        .where(items_t.c.product_id == product_id)).scalar_one()


def stage_counts(connection: Connection) -> dict[int, dict[str, int]]:
    """Every waiting room's places counted by stage (the staff's dashboard)."""
    counted: dict[int, dict[str, int]] = {}
    for product_id, stage, count in connection.execute(
            select(places_t.c.product_id, places_t.c.stage, func.count())
            .group_by(places_t.c.product_id, places_t.c.stage)).all():
        counted.setdefault(product_id, {})[stage] = count
    return counted


def take_out(connection: Connection, shopper_id: str) -> set[int]:
    """A locked account's places taken out of every waiting room (before the shuffle: listed among
    its removed; after: out of the line, or out of its turn); returns the rooms it left. Each room's
    version moves first (its row locked before its places, as the keeper locks them), so that its
    keeper, finding a version it did not write, reads the room again from its rows."""
    live = (str(Stage.PRE_QUEUE), str(Stage.QUEUE), str(Stage.ADMITTED))
    product_ids = sorted(set(connection.execute(select(places_t.c.product_id).where(
        places_t.c.shopper_id == shopper_id, places_t.c.stage.in_(live))).scalars()))
    for product_id in product_ids:
        connection.execute(update(rooms_t).where(rooms_t.c.product_id == product_id)
                           .values(version=rooms_t.c.version + 1))
    if product_ids:
        connection.execute(update(places_t).where(places_t.c.shopper_id == shopper_id, places_t.c.stage.in_(live),
                                                  places_t.c.product_id.in_(product_ids))  # (the rooms moved)
                           .values(stage=str(Stage.REMOVED), until=None, updated_at=_now()))
    return set(product_ids)


# --- the purchase's guard ---------------------------------------------------------------------

def live_admissions(connection: Connection, shopper_id: str, product_ids: set[int]) -> set[int]:
    """Of these products, those the shopper may buy now: a live admission (the purchase's fact)."""
    if not product_ids:
        return set()
    return set(connection.execute(select(places_t.c.product_id).where(
        places_t.c.shopper_id == shopper_id, places_t.c.product_id.in_(product_ids),
        places_t.c.stage == str(Stage.ADMITTED), places_t.c.until > _now())).scalars())


def use_admissions(connection: Connection, product_id: int, shopper_ids: set[str]) -> set[str]:
    """Mark the shoppers' live turns bought, in the sale's transaction; returns the shoppers whose
    turn it was (a sale of anyone else must not stand)."""
    used: set[str] = set()
    for batch in in_batches(shopper_ids):
        used.update(connection.execute(update(places_t).where(
            places_t.c.product_id == product_id, places_t.c.shopper_id.in_(batch),
            places_t.c.stage == str(Stage.ADMITTED), places_t.c.until > _now())
            .values(stage=str(Stage.BOUGHT), updated_at=_now()).returning(places_t.c.shopper_id)).scalars())
    return used
