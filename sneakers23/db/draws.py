"""A draw's rows: its commitment, its entries, the close's record and each entry's outcome
(domain/draws.py has the rules; inventory/draws.py runs them)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import Connection, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from sneakers23.db.engine import in_batches
from sneakers23.db.models import AccountRow, DrawEntryRow, DrawRow, ItemAvailabilityRow, ItemRow, ProductRow
from sneakers23.domain.accounts import account_of_shopper
from sneakers23.domain.draws import DrawState, Entry, Outcome, entry_of_key
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import ShuffleRecord

draws_t = DrawRow.__table__
entries_t = DrawEntryRow.__table__
products_t = ProductRow.__table__
items_t = ItemRow.__table__
availability_t = ItemAvailabilityRow.__table__
accounts_t = AccountRow.__table__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def prepare(connection: Connection, product_id: int, seed: bytes, commitment: str) -> str:
    """The product's draw, made if it has none; its commitment."""
    held = connection.execute(select(draws_t.c.commitment).where(draws_t.c.product_id == product_id)).scalar()
    if held is not None:
        return held
    connection.execute(insert(draws_t).values(product_id=product_id, seed=seed.hex(), commitment=commitment,
                                              inserted_at=_now()))
    return commitment


def entries_count(connection: Connection, product_id: int) -> int:
    return connection.execute(select(func.count()).select_from(entries_t)
                              .where(entries_t.c.product_id == product_id)).scalar_one()


def forget(connection: Connection, product_id: int) -> None:
    """The product's draw, gone (it has no entries: the caller checked, under the product's lock)."""
    connection.execute(delete(draws_t).where(draws_t.c.product_id == product_id))


def entry_facts(connection: Connection, product_id: int, item_id: int) -> tuple[DropMode, bool, int | None] | None:
    """What an entry's rule reads (domain/draws.py: entry_refused): the product's drop mode, whether
    it is released, and the asked size's product (None: no such size); None for no such product.
    Two key lookups, not the catalog: a draw's crowd enters by the thousand."""
    product = connection.execute(select(products_t.c.drop_mode, products_t.c.released)
                                 .where(products_t.c.id == product_id)).one_or_none()
    if product is None:
        return None
    item_product = connection.execute(select(items_t.c.product_id).where(items_t.c.id == item_id)).scalar()
    return DropMode(product.drop_mode), bool(product.released), item_product


def proof_used(connection: Connection, proof: str | None) -> bool:
    return proof is not None and connection.execute(
        select(entries_t.c.id).where(entries_t.c.proof == proof)).first() is not None


def enter(connection: Connection, product_id: int, shopper_id: str, item_id: int, entry_id: str,
          proof: str | None = None) -> bool:
    """Make the account's entry with this size; False when it had one already (the caller reads it),
    its proof of work made another entry meanwhile (the unique index), or the product is no longer
    an unreleased draw (the guard under the caller's rule: on PostgreSQL the product's row is
    shared-locked, so a release waits for the entry's commit)."""
    open_for_entries = select(products_t.c.id).where(
        products_t.c.id == product_id, products_t.c.released.is_(False), products_t.c.drop_mode == str(DropMode.DRAW))
    if connection.dialect.name == "postgresql":
        open_for_entries = open_for_entries.with_for_update(read=True)
    if connection.execute(open_for_entries).first() is None:
        return False
    made = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(entries_t).values(
        product_id=product_id, shopper_id=shopper_id, entry_id=entry_id, item_id=item_id,
        outcome=str(Outcome.ENTERED), note="", proof=proof, entered_at=_now(), updated_at=_now())
    return connection.execute(made.on_conflict_do_nothing()).rowcount == 1  # (one per account)


def entry_of(connection: Connection, product_id: int, shopper_id: str) -> Entry | None:
    row = connection.execute(select(*_ENTRY).where(entries_t.c.product_id == product_id,
                                                   entries_t.c.shopper_id == shopper_id)).one_or_none()
    return None if row is None else _entry(row)


def entries(connection: Connection, product_id: int) -> list[Entry]:
    return [_entry(row) for row in connection.execute(
        select(*_ENTRY).where(entries_t.c.product_id == product_id).order_by(entries_t.c.entry_id))]


_ENTRY = (entries_t.c.entry_id, entries_t.c.shopper_id, entries_t.c.item_id, entries_t.c.outcome, entries_t.c.note)


def _entry(row) -> Entry:
    return Entry(row.entry_id, row.shopper_id, row.item_id, Outcome(row.outcome), row.note)


def entries_per_size(connection: Connection, product_id: int) -> dict[int, int]:
    return dict(connection.execute(
        select(entries_t.c.item_id, func.count()).where(entries_t.c.product_id == product_id)
        .group_by(entries_t.c.item_id)).all())


def staff_figures(connection: Connection, leave_out: set[tuple[int, str]] = frozenset()
                  ) -> tuple[dict[int, tuple[bool, bool, bool, bool]], dict[int, str], list[tuple[int, int, str, int]],
                             dict[int, int]]:
    """Every draw's (released, closed, finished, told) and commitment (which names the draw: a
    reseed makes new ones), and, but for the draws left out by (product, commitment) (their
    figures are known: told, nothing changes), its entries counted by size and outcome, and those
    still to be told (grouped reads: the dashboard asks every few seconds)."""
    rows = connection.execute(select(draws_t.c.product_id, draws_t.c.commitment, products_t.c.released,
                                     draws_t.c.closed_at, draws_t.c.finished_at, draws_t.c.told_at)
                              .join(products_t, products_t.c.id == draws_t.c.product_id)).all()
    stages = {row.product_id: (bool(row.released), row.closed_at is not None, row.finished_at is not None,
                               row.told_at is not None) for row in rows}
    commitments = {row.product_id: row.commitment for row in rows}
    counted = [product_id for product_id in stages if (product_id, commitments[product_id]) not in leave_out]
    if not counted:
        return stages, commitments, [], {}
    counts = [tuple(row) for row in connection.execute(
        select(entries_t.c.product_id, entries_t.c.item_id, entries_t.c.outcome, func.count())
        .where(entries_t.c.product_id.in_(counted))
        .group_by(entries_t.c.product_id, entries_t.c.item_id, entries_t.c.outcome))]
    untold = dict(connection.execute(
        select(entries_t.c.product_id, func.count()).where(entries_t.c.product_id.in_(counted),
                                                           entries_t.c.told_at.is_(None))
        .group_by(entries_t.c.product_id)).all())
    return stages, commitments, counts, untold


def state(connection: Connection, product_id: int) -> DrawState | None:
    row = connection.execute(
        select(draws_t.c.commitment, draws_t.c.record, draws_t.c.closed_at, draws_t.c.finished_at)
        .where(draws_t.c.product_id == product_id)).one_or_none()
    if row is None:
        return None
    record = None if row.record is None else ShuffleRecord.from_dict(json.loads(row.record))
    return DrawState(product_id, row.commitment, record, _utc(row.closed_at), _utc(row.finished_at))


def to_run(connection: Connection) -> list[int]:
    """Released draws whose pairs are not all given yet (closed, or due to close), or whose
    entrants are not all told yet."""
    return list(connection.execute(
        select(draws_t.c.product_id).join(products_t, products_t.c.id == draws_t.c.product_id)
        .where(products_t.c.released.is_(True), products_t.c.drop_mode == str(DropMode.DRAW),
               draws_t.c.finished_at.is_(None) | draws_t.c.told_at.is_(None)).order_by(draws_t.c.product_id)).scalars())


def finished(connection: Connection, product_id: int) -> bool:
    return connection.execute(select(draws_t.c.product_id).where(
        draws_t.c.product_id == product_id, draws_t.c.finished_at.is_not(None))).first() is not None


def untold(connection: Connection, product_id: int, limit: int) -> list[Entry]:
    """Entries of the finished draw whose letter is not sent yet, the first `limit` of them."""
    return [_entry(row) for row in connection.execute(
        select(*_ENTRY).join(draws_t, draws_t.c.product_id == entries_t.c.product_id)
        .where(entries_t.c.product_id == product_id, draws_t.c.finished_at.is_not(None), entries_t.c.told_at.is_(None))
        .order_by(entries_t.c.id).limit(limit))]


def told(connection: Connection, product_id: int) -> bool:
    return connection.execute(select(draws_t.c.told_at).where(draws_t.c.product_id == product_id)).scalar() is not None


def mark_told(connection: Connection, product_id: int, entry_ids: list[str] | None) -> bool:
    """These entries told (None: all of the draw's); the draw marked told once no entry is left
    untold. True when the draw is told."""
    untold = update(entries_t).where(entries_t.c.product_id == product_id, entries_t.c.told_at.is_(None))
    if entry_ids is None:
        connection.execute(untold.values(told_at=_now()))
    for batch in in_batches(entry_ids or []):
        connection.execute(untold.where(entries_t.c.entry_id.in_(batch)).values(told_at=_now()))
    anyone_untold = select(entries_t.c.id).where(entries_t.c.product_id == product_id,
                                                 entries_t.c.told_at.is_(None)).exists()
    connection.execute(update(draws_t).where(draws_t.c.product_id == product_id, draws_t.c.finished_at.is_not(None),
                                             draws_t.c.told_at.is_(None), ~anyone_untold).values(told_at=_now()))
    return told(connection, product_id)


def outcome_counts(connection: Connection, product_id: int) -> dict[Outcome, int]:
    counts = dict(connection.execute(select(entries_t.c.outcome, func.count()).where(entries_t.c.product_id == product_id)
                                     .group_by(entries_t.c.outcome)).all())
    return {outcome: counts.get(str(outcome), 0) for outcome in Outcome}


def seed_of(connection: Connection, product_id: int, lock: bool = False) -> tuple[bytes, ShuffleRecord | None]:
    """The draw's seed, and its record once closed; with `lock`, its row is held until the commit."""
    query = select(draws_t.c.seed, draws_t.c.record).where(draws_t.c.product_id == product_id)
    row = connection.execute(query.with_for_update() if lock else query).one()
    return bytes.fromhex(row.seed), None if row.record is None else ShuffleRecord.from_dict(json.loads(row.record))


def close(connection: Connection, product_id: int, record: ShuffleRecord) -> ShuffleRecord:
    """The shuffle's record, kept (and so published), and the removed entries marked with why; the
    record kept already, when another run closed the draw first."""
    kept = connection.execute(update(draws_t).where(draws_t.c.product_id == product_id, draws_t.c.record.is_(None))
                              .values(record=json.dumps(record.as_dict()), closed_at=_now())).rowcount
    if not kept:
        return seed_of(connection, product_id)[1]
    set_outcomes(connection, product_id, {r.entry: (Outcome.REMOVED, r.reason) for r in record.removed},
                 Outcome.ENTERED)
    return record


def set_outcomes(connection: Connection, product_id: int, outcomes: dict[str, tuple[Outcome, str]],
                 only_from: Outcome) -> list[str]:
    """Each entry's new outcome (and note), where it still has `only_from` (so a run that read
    before another's write changes nothing the other decided); returns the entries changed. One
    statement for all the entries given the same outcome and note (a draw's round: a thousand
    winners)."""
    alike: dict[tuple[Outcome, str], list[str]] = {}
    for entry_id, (outcome, note) in outcomes.items():
        alike.setdefault((outcome, note[:255]), []).append(entry_id)
    changed: set[str] = set()
    for (outcome, note), entry_ids in alike.items():
        for batch in in_batches(entry_ids):
            changed.update(connection.execute(
                update(entries_t).where(entries_t.c.product_id == product_id, entries_t.c.entry_id.in_(batch),
                                        entries_t.c.outcome == str(only_from))
                .values(outcome=str(outcome), note=note, updated_at=_now()).returning(entries_t.c.entry_id)).scalars())
    return [entry_id for entry_id in outcomes if entry_id in changed]  # (in the order given: the drawn order)


def finish(connection: Connection, product_id: int) -> bool:
    """Every pair given: the entries still undecided lost. False when another run finished it."""
    still_buying = select(entries_t.c.id).where(entries_t.c.product_id == product_id,
                                                entries_t.c.outcome == str(Outcome.WON)).exists()
    if not connection.execute(update(draws_t).where(draws_t.c.product_id == product_id,
                                                    draws_t.c.finished_at.is_(None), ~still_buying)
                              .values(finished_at=_now())).rowcount:
        return False
    connection.execute(update(entries_t).where(entries_t.c.product_id == product_id,
                                               entries_t.c.outcome == str(Outcome.ENTERED))
                       .values(outcome=str(Outcome.LOST), updated_at=_now()))
    return True


def lock(connection: Connection, product_id: int) -> None:
    """The draw's row, held until the commit (PostgreSQL; SQLite's writers take turns anyway): one
    run at a time chooses winners."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(draws_t.c.product_id).where(draws_t.c.product_id == product_id).with_for_update())


def locked_shoppers(connection: Connection, shopper_ids: set[str]) -> set[str]:
    """Those of the shoppers whose account is locked, or gone."""
    ids = {shopper_id: account_of_shopper(shopper_id) for shopper_id in shopper_ids}
    unlocked = {account_id for batch in in_batches({i for i in ids.values() if i is not None})
                for account_id in connection.execute(select(accounts_t.c.id).where(
                    accounts_t.c.id.in_(batch), accounts_t.c.locked_at.is_(None))).scalars()}
    return {shopper_id for shopper_id, account_id in ids.items() if account_id not in unlocked}


def sizes(connection: Connection, product_id: int) -> dict[int, str]:
    return dict(connection.execute(select(items_t.c.id, items_t.c.size).where(items_t.c.product_id == product_id)).all())


def pairs_left(connection: Connection, product_id: int) -> dict[int, int]:
    return dict(connection.execute(
        select(items_t.c.id, availability_t.c.available_count)
        .join(availability_t, availability_t.c.item_id == items_t.c.id)
        .where(items_t.c.product_id == product_id)).all())


# --- what a purchase of a draw's pairs reads and writes ---

def won_sizes(connection: Connection, shopper_id: str, product_ids: set[int], key: str | None) -> set[int]:
    """The size the purchase's key buys for the shopper as a draw's winner (of one of those
    products, not bought yet); empty for any other key."""
    entry_id = entry_of_key(key)
    if not product_ids or entry_id is None:
        return set()
    return set(connection.execute(
        select(entries_t.c.item_id).where(entries_t.c.entry_id == entry_id, entries_t.c.shopper_id == shopper_id,
                                          entries_t.c.product_id.in_(product_ids),
                                          entries_t.c.outcome == str(Outcome.WON))).scalars())


def mark_bought(connection: Connection, product_id: int, wins: list[tuple[str, str, int]]) -> int:
    """Each (entry, shopper, size) a winner's pair bought, marked so in the sale's transaction;
    returns how many were won and not bought yet (fewer than asked: the sale must not stand)."""
    if not wins:
        return 0
    return connection.execute(
        update(entries_t)
        .where(entries_t.c.product_id == product_id, entries_t.c.outcome == str(Outcome.WON),
               tuple_(entries_t.c.entry_id, entries_t.c.shopper_id, entries_t.c.item_id).in_(wins))
        .values(outcome=str(Outcome.BOUGHT), updated_at=_now())).rowcount


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)

