"""What a purchase asks for, what it comes back with, and the rule that answers it.

The rule (`answer_purchase`) is written once, here. The sales ledger asks it of what memory holds
(domain/sales.py); the database's purchase asks it of the rows it has just read (db/queries.py),
and then only writes, behind guards that send it back to read again if those rows moved.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sneakers23.domain.accounts import ACCOUNT_SHOPPER_PREFIX
from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.domain.draws import DRAW_KEY_PREFIX
from sneakers23.domain.levels import Level, level_for
from sneakers23.domain.words import counted

MAX_UNITS_PER_PURCHASE = 20
MAX_SHOPPER_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 128


class Refusal(StrEnum):
    SOLD_OUT = "sold_out"
    NOT_RELEASED = "not_released"
    LIMIT_REACHED = "limit_reached"
    UNKNOWN_ITEM = "unknown_item"
    KEY_REUSED = "idempotency_key_reused"  # the key of an earlier purchase, sent with other items
    SIGN_IN_REQUIRED = "sign_in_required"  # a drop for signed-in shoppers with a verified address
    SOLD_BY_DRAW = "sold_by_draw"  # a draw's pairs go to its winners (domain/draws.py), bought for them
    NOT_ADMITTED = "not_admitted"  # a queue's pairs go to those its waiting room let in (domain/waiting_room.py)


_MESSAGES = {
    Refusal.SOLD_OUT: "item {item_id} is sold out",
    Refusal.NOT_RELEASED: "item {item_id} belongs to a product that is not released yet",
    Refusal.LIMIT_REACHED: "the shopper has reached the purchase limit for item {item_id}",
    Refusal.UNKNOWN_ITEM: "there is no item {item_id}",
    Refusal.KEY_REUSED: "this idempotency key belongs to an earlier purchase of other items",
    Refusal.SIGN_IN_REQUIRED: "item {item_id} is sold only to signed-in shoppers whose email address is confirmed: "
                              "sign in (or confirm your address) to buy it",
    Refusal.SOLD_BY_DRAW: "item {item_id} is sold by draw: enter the draw on its page before the close, and "
                          "the winners' pairs are bought for them",
    Refusal.NOT_ADMITTED: "item {item_id} is sold through a queue: wait on its page for your turn, then buy it "
                          "within the minutes your turn gives you",
}


@dataclass(frozen=True, slots=True)
class SoldUnit:
    """One pair sold, with the item's count and version right after the sale."""

    order_id: int
    item_id: int
    product_id: int
    available_count: int
    version: int

    @property
    def level(self) -> Level:
        return level_for(self.available_count)

    def __reduce__(self):  # (a dataclass pickles through fields(): results cross to and from actors by the thousand)
        return SoldUnit, (self.order_id, self.item_id, self.product_id, self.available_count, self.version)


@dataclass(frozen=True, slots=True)
class PurchaseResult:
    """Either every unit was sold (`units`), or none was and `refusal` says why."""

    units: tuple[SoldUnit, ...] = ()
    refusal: Refusal | None = None
    refused_item_id: int | None = None
    replayed: bool = False  # a repeated idempotency key: the first purchase's result, nothing sold now
    changes: tuple[AvailabilityChanged, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.refusal is None

    def __reduce__(self):
        return PurchaseResult, (self.units, self.refusal, self.refused_item_id, self.replayed, self.changes)

    @property
    def message(self) -> str:
        if self.refusal is None:
            return f"sold {counted(len(self.units), 'pair')}"
        return _MESSAGES[self.refusal].format(item_id=self.refused_item_id)

    @classmethod
    def refused(cls, refusal: Refusal, item_id: int) -> "PurchaseResult":
        return cls(refusal=refusal, refused_item_id=item_id)

    @classmethod
    def sold(cls, units: tuple[SoldUnit, ...], replayed: bool = False) -> "PurchaseResult":
        # The newest state of each item: the last unit sold of it carries the highest version.
        latest: dict[int, SoldUnit] = {}
        for unit in units:
            if unit.item_id not in latest or unit.version > latest[unit.item_id].version:
                latest[unit.item_id] = unit
        changes = tuple(
            AvailabilityChanged(u.item_id, u.product_id, u.available_count, u.version)
            for u in sorted(latest.values(), key=lambda u: u.item_id)
        )
        return cls(units=units, replayed=replayed, changes=changes)


@dataclass(frozen=True, slots=True)
class BoughtPair:
    """One pair a shopper bought (an order row), for the shopper's orders page."""

    order_id: int
    item_id: int
    product_id: int
    idempotency_key: str  # the pairs of one purchase share it
    bought_at: datetime


# The facts are built for every purchase the sales actor decides (thousands a second in a drop):
# plain slotted dataclasses, whose __init__ costs a quarter of a frozen one's. Nothing keeps them.
@dataclass(slots=True)
class SizeOnSale:
    """What a purchase must know of one size."""

    product_id: int
    released: bool  # its product is on sale
    available: int  # pairs that may still be sold
    sign_in_required: bool = False  # its product sells only to shoppers under a verified account
    drawn: bool = False  # its product's pairs go to the winners of its draw
    queued: bool = False  # its product's pairs go to those its waiting room lets in


@dataclass(slots=True)
class PurchaseFacts:
    """Everything that decides a purchase, as memory or the database holds it."""

    sizes: Mapping[int, SizeOnSale]  # the sizes asked for that exist
    pairs_held: Mapping[int, int] = field(default_factory=dict)  # product -> pairs the shopper holds of it
    sizes_held: Container[int] = frozenset()  # sizes the shopper holds (one pair of each at most)
    earlier: tuple[SoldUnit, ...] | None = None  # the purchase made before with the same key, in line order
    signed_in: bool = False  # the shopper shops under a verified account (`signed_in`)
    # The sizes the shopper won in a draw and has not bought yet: the database knows; memory does
    # not (None), and so refuses every purchase of a draw's pairs (a stale refusal is safe).
    won: Container[int] | None = None
    # The queued products the shopper was let in for and may buy now: the database knows; memory
    # does not (None) and lets the database decide (its admissions are the guard).
    admitted: Container[int] | None = None


def answer_purchase(item_ids: list[int], facts: PurchaseFacts, max_pairs_per_product: int) -> PurchaseResult | None:
    """The answer to a purchase, or None when it may be sold: the replay of the purchase made before
    with its key, else the first refusal in this order: an unknown size, a product not released, a
    product for signed-in shoppers and one who is not, a draw's size for anyone but its winner, a
    queue's size for anyone it has not let in, a size asked for twice, a size sold out, a product's
    limit passed, a size the shopper holds."""
    if facts.earlier is not None:
        return replay(facts.earlier, item_ids)
    seen: set[int] = set()
    wanted: dict[int, int] = {}  # product -> pairs asked for
    for item_id in item_ids:
        size = facts.sizes.get(item_id)
        if size is None:
            return PurchaseResult.refused(Refusal.UNKNOWN_ITEM, item_id)
        if not size.released:
            return PurchaseResult.refused(Refusal.NOT_RELEASED, item_id)
        if size.sign_in_required and not facts.signed_in:
            return PurchaseResult.refused(Refusal.SIGN_IN_REQUIRED, item_id)
        if size.drawn and (facts.won is None or item_id not in facts.won):
            return PurchaseResult.refused(Refusal.SOLD_BY_DRAW, item_id)
        if size.queued and facts.admitted is not None and size.product_id not in facts.admitted:
            return PurchaseResult.refused(Refusal.NOT_ADMITTED, item_id)
        if item_id in seen:
            return PurchaseResult.refused(Refusal.LIMIT_REACHED, item_id)  # one pair per size
        seen.add(item_id)
        wanted[size.product_id] = wanted.get(size.product_id, 0) + 1
    for item_id in item_ids:
        if facts.sizes[item_id].available <= 0:
            return PurchaseResult.refused(Refusal.SOLD_OUT, item_id)
    for product_id in (sorted(wanted) if len(wanted) > 1 else wanted):
        if facts.pairs_held.get(product_id, 0) + wanted[product_id] > max_pairs_per_product:
            first = next(i for i in item_ids if facts.sizes[i].product_id == product_id)
            return PurchaseResult.refused(Refusal.LIMIT_REACHED, first)
    for item_id in item_ids:
        if item_id in facts.sizes_held:
            return PurchaseResult.refused(Refusal.LIMIT_REACHED, item_id)
    return None


def replay(earlier: tuple[SoldUnit, ...], item_ids: list[int]) -> PurchaseResult:
    """A purchase sent again with its key: the first one's result, if it asked for the same sizes."""
    if [unit.item_id for unit in earlier] != list(item_ids):
        return PurchaseResult.refused(Refusal.KEY_REUSED, item_ids[0])
    return PurchaseResult.sold(earlier, replayed=True)


def signed_in(shopper_id: str) -> bool:
    """Whether a purchase's shopper is a verified account (the web gives such a shopper the
    account's id, and only then: domain/accounts.py `shops_as_account`)."""
    return shopper_id.startswith(ACCOUNT_SHOPPER_PREFIX)


def validate_shopper(shopper_id: str) -> None:
    if not isinstance(shopper_id, str) or not shopper_id or len(shopper_id) > MAX_SHOPPER_ID_LENGTH:
        raise ValueError(f"a shopper id is 1 to {MAX_SHOPPER_ID_LENGTH} characters")


def validate_purchase(shopper_id: str, item_ids: list[int], idempotency_key: str | None) -> None:
    """Reject malformed requests before they reach the database."""
    validate_shopper(shopper_id)
    if not item_ids:
        raise ValueError("a purchase needs at least one item")
    if len(item_ids) > MAX_UNITS_PER_PURCHASE:
        raise ValueError(f"a purchase holds at most {MAX_UNITS_PER_PURCHASE} pairs")
    for item_id in item_ids:
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise ValueError(f"item ids are whole numbers, not {item_id!r}")
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH):
        raise ValueError(f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    if idempotency_key is not None and idempotency_key.startswith(DRAW_KEY_PREFIX):
        # (the draw's own purchases, which go to the database without this check, have such keys)
        raise ValueError(f"an idempotency key may not begin with {DRAW_KEY_PREFIX!r}: those are a draw's")


@dataclass(frozen=True, slots=True)
class Order:
    """The pairs of one purchase (they share its idempotency key)."""

    key: str
    bought_at: datetime
    item_ids: tuple[int, ...]


def orders_of(pairs: list[BoughtPair]) -> list[Order]:
    """A shopper's pairs grouped by purchase, in the order given (newest first)."""
    grouped: dict[str, list[BoughtPair]] = {}
    for pair in pairs:
        grouped.setdefault(pair.idempotency_key, []).append(pair)
    return [Order(key, group[0].bought_at, tuple(pair.item_id for pair in group)) for key, group in grouped.items()]
