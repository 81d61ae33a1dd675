"""Group commit: the purchases a product's sales actor admitted, written in one transaction.

One guarded counter update for all the batch's shoppers, then, per size, one conditional decrement
by the batch's count (the lock order of a purchase on its own); the orders in one bulk insert (the
unique indexes behind them); one commit. If any guard trips (stock or a shopper's holdings changed
outside the sales actor), the whole batch rolls back and its purchases are sold one by one
(`queries.purchase`), so that one bad purchase never fails the others. The database's guards stay
the net under the ledger in memory. `sell_claims` is all of it: the sales actor's one way to the
database.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError

from sneakers23.db.engine import translated_errors
from sneakers23.db import draws, queries, waiting_rooms
from sneakers23.db.queries import add_pairs_of_many, decrement, load_products, orders_t
from sneakers23.domain.catalog import Product
from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.domain.draws import entry_of_key
from sneakers23.domain.purchases import PurchaseResult, Refusal, SoldUnit, signed_in
from sneakers23.domain.sales import Claim, SaleRecord
from sneakers23.errors import DatabaseUnavailable, NotFound
from sneakers23.group_commit import one_by_one

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """What the database made of a batch of claims."""

    outcomes: list[PurchaseResult | Exception]  # each claim's, in order: its result, or the error it met
    changes: list[AvailabilityChanged]  # each size's state after
    transactions: int
    redone: bool  # the batch was refused as a whole: its purchases were sold one by one


def sell_claims(engine: Engine, database_url: str, product_id: int, claims: list[Claim],
                max_pairs_per_product: int, queued: bool = False) -> Committed:
    """Sell the claims in one transaction, or, when a guard refuses the batch, one transaction per
    purchase: each purchase's outcome its own, so one that fails fails alone. Once the database is
    away, the rest are not tried (each try could wait out a timeout) and are told to try again.
    Raises the database's error when the batch's own transaction met it (nothing sold)."""
    with translated_errors(database_url), engine.connect() as connection, connection.begin() as transaction:
        sold = commit_batch(connection, product_id, claims, max_pairs_per_product, queued)
        if sold is not None:
            return Committed(*sold, transactions=1, redone=False)
        transaction.rollback()
    def sell_one(claim: Claim) -> PurchaseResult:
        with translated_errors(database_url):
            return queries.purchase(engine, claim.shopper_id, list(claim.item_ids), claim.key if claim.keyed else None,
                                    max_pairs_per_product)

    outcomes = one_by_one(claims, sell_one, stops_all=(DatabaseUnavailable,))
    changes = [change for outcome in outcomes if isinstance(outcome, PurchaseResult) and outcome.ok
               for change in outcome.changes]
    tried = sum(isinstance(outcome, PurchaseResult) for outcome in outcomes)
    return Committed(outcomes, changes, transactions=tried, redone=True)


def load_sales(connection: Connection, product_id: int) -> tuple[Product, list[SaleRecord]]:
    """What a product's sales ledger starts from: the product with each size's committed count,
    and every purchase of it committed so far."""
    product = next((p for p in load_products(connection) if p.id == product_id), None)
    if product is None:
        raise NotFound(f"there is no product {product_id}")
    rows = connection.execute(
        select(orders_t.c.id, orders_t.c.shopper_id, orders_t.c.idempotency_key, orders_t.c.item_id,
               orders_t.c.available_count_after, orders_t.c.version_after)
        .where(orders_t.c.product_id == product_id)
        .order_by(orders_t.c.shopper_id, orders_t.c.idempotency_key, orders_t.c.line)
    )
    units: dict[tuple[str, str], list[SoldUnit]] = {}
    for row in rows:
        units.setdefault((row.shopper_id, row.idempotency_key), []).append(
            SoldUnit(row.id, row.item_id, product_id, row.available_count_after, row.version_after))
    return product, [SaleRecord(shopper, key, tuple(sold)) for (shopper, key), sold in units.items()]


# On PostgreSQL the batch's rows travel as arrays, in a statement whose text never changes with the
# batch's size: parsed, planned and converted once (a statement of 200 VALUES rows cost more to build
# than to run). SQLite, in process, takes the rows as they are.
_ORDERS_FROM_ARRAYS = text(
    "INSERT INTO orders (shopper_id, item_id, product_id, idempotency_key, line, available_count_after, "
    "version_after, inserted_at) "
    "SELECT shopper_id, item_id, :product_id, idempotency_key, line, available_count_after, version_after, "
    ":inserted_at FROM unnest(CAST(:shoppers AS text[]), CAST(:items AS int[]), CAST(:keys AS text[]), "
    "CAST(:lines AS int[]), CAST(:counts AS int[]), CAST(:versions AS int[])) "
    "AS sold(shopper_id, item_id, idempotency_key, line, available_count_after, version_after) "
    "RETURNING id, shopper_id, idempotency_key, line")


def insert_orders(connection: Connection, product_id: int, rows: list[dict]) -> list[int]:
    """The orders, in one statement; returns their ids in the rows' order."""
    if connection.dialect.name != "postgresql":
        return connection.execute(
            orders_t.insert().returning(orders_t.c.id, sort_by_parameter_order=True), rows).scalars().all()
    inserted = connection.execute(_ORDERS_FROM_ARRAYS, {
        "product_id": product_id, "inserted_at": rows[0]["inserted_at"],
        **{name: [row[column] for row in rows] for name, column in (
            ("shoppers", "shopper_id"), ("items", "item_id"), ("keys", "idempotency_key"), ("lines", "line"),
            ("counts", "available_count_after"), ("versions", "version_after"))}}).all()
    ids = {(row.shopper_id, row.idempotency_key, row.line): row.id for row in inserted}
    return [ids[(row["shopper_id"], row["idempotency_key"], row["line"])] for row in rows]


def commit_batch(connection: Connection, product_id: int, claims: list[Claim], max_pairs_per_product: int,
                 queued: bool = False) -> tuple[list[PurchaseResult], list[AvailabilityChanged]] | None:
    """Sell every claim, in the caller's transaction: the claims' results, in order, and each
    size's state after them; None when a guard trips (the caller rolls back). A queued product's
    claims (`queued`) sell only with their buyers' live turns, used here; a claim without one (or a
    second of the same buyer: a turn buys once) is refused on its own, and the others go on."""
    refused: dict[int, PurchaseResult] = {}
    if queued:  # (first, as in a purchase on its own: the turns, then the counters, then the sizes)
        with_turn = waiting_rooms.use_admissions(connection, product_id, {claim.shopper_id for claim in claims})
        for at, claim in enumerate(claims):
            if claim.shopper_id not in with_turn:
                refused[at] = PurchaseResult.refused(Refusal.NOT_ADMITTED, claim.item_ids[0])
            with_turn.discard(claim.shopper_id)
        if refused:
            selling = [claim for at, claim in enumerate(claims) if at not in refused]
            sold = _sell(connection, product_id, selling, max_pairs_per_product, True) if selling else ([], [])
            if sold is None:
                return None
            results = iter(sold[0])
            return [refused[at] if at in refused else next(results) for at in range(len(claims))], sold[1]
    return _sell(connection, product_id, claims, max_pairs_per_product, queued)


def _sell(connection: Connection, product_id: int, claims: list[Claim], max_pairs_per_product: int,
          turns_used: bool) -> tuple[list[PurchaseResult], list[AvailabilityChanged]] | None:
    # The shoppers' counters first, then the sizes: the lock order of a purchase on its own.
    pairs = Counter()
    for claim in claims:
        pairs[claim.shopper_id] += len(claim.item_ids)
    if max(pairs.values()) > max_pairs_per_product or \
            add_pairs_of_many(connection, product_id, pairs, max_pairs_per_product) < len(pairs):
        return _refused(product_id, len(claims), f"a shopper would pass the limit of {max_pairs_per_product} pairs")
    by_draw = any(entry_of_key(claim.key) for claim in claims)
    if by_draw and not _winners_marked(connection, product_id, claims):
        return _refused(product_id, len(claims), "a purchase of a draw's pair that no winner's entry holds")

    wanted = Counter(item_id for claim in claims for item_id in claim.item_ids)
    after: dict[int, tuple[int, int]] = {}  # item -> (count after the batch, version)
    guests = not all(signed_in(claim.shopper_id) for claim in claims)
    for item_id in sorted(wanted):  # a fixed lock order
        row = decrement(connection, item_id, product_id, wanted[item_id], guests, by_draw, admitted=turns_used)
        if row is None:
            return _refused(product_id, len(claims), f"item {item_id} has fewer than {wanted[item_id]} pairs, or is not on sale")
        after[item_id] = (row.available_count, row.version)

    # Each pair's count right after it sold: the batch sells an item's pairs in claim order.
    left = {item_id: count + wanted[item_id] for item_id, (count, _version) in after.items()}
    now = datetime.now(timezone.utc)
    rows = []
    for claim in claims:
        for line, item_id in enumerate(claim.item_ids):
            left[item_id] -= 1
            rows.append({"shopper_id": claim.shopper_id, "item_id": item_id, "product_id": product_id,
                         "idempotency_key": claim.key, "line": line, "available_count_after": left[item_id],
                         "version_after": after[item_id][1], "inserted_at": now})
    try:
        order_ids = insert_orders(connection, product_id, rows)
    except IntegrityError as error:  # a size the shopper already had, or a key already used
        return _refused(product_id, len(claims), str(error.orig).splitlines()[0])

    results, at = [], 0
    for claim in claims:
        units = tuple(SoldUnit(order_ids[at + line], item_id, product_id, rows[at + line]["available_count_after"],
                               rows[at + line]["version_after"]) for line, item_id in enumerate(claim.item_ids))
        results.append(PurchaseResult(units=units))  # (the batch's changes are returned once, below)
        at += len(claim.item_ids)
    return results, [AvailabilityChanged(item_id, product_id, count, version)
                     for item_id, (count, version) in sorted(after.items())]


def _winners_marked(connection: Connection, product_id: int, claims: list[Claim]) -> bool:
    """A draw's winners' purchases (their keys name their entries) come as batches of their own;
    their guard is their entries, marked bought here (any other batch's decrement refuses a draw's
    sizes). False when a claim is not a winner's pair still to buy."""
    wins = [(entry_of_key(claim.key), claim.shopper_id, item_id) for claim in claims for item_id in claim.item_ids]
    return draws.mark_bought(connection, product_id, wins) == len(wins)


def _refused(product_id: int, claims: int, why: str) -> None:
    log.info("product %s: a batch of %d was refused (%s): selling them one by one", product_id, claims, why)
    return None
