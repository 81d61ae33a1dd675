"""The sales ledger of one product: who may buy what, decided in memory.

A drop is thousands of shoppers pressing "buy" at once, most of whom must be told "sold out". The
product's sales actor asks this ledger first: it refuses what cannot sell (sold out, limit
reached, not released, unknown item) and answers repeated purchases from memory, without the
database. What it admits is only a claim: it becomes a sale when the database commits it, in a
batch with others (db/sales.py). Memory may refuse; it never makes a sale true.

The ledger holds, per size, the count the database last committed (moving only forward by
version, as every cache does) and the pairs admitted but not yet committed; per shopper, the sizes
they hold of the product, committed or admitted; and every committed purchase by its idempotency
key, to replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from sneakers23.domain.catalog import Catalog, Product
from sneakers23.domain.changes import AvailabilityChanged, Change, InventoryChange, product_state
from sneakers23.domain.purchases import (PurchaseFacts, PurchaseResult, Refusal, SizeOnSale, SoldUnit, answer_purchase,
                                         replay, signed_in)


@dataclass(frozen=True, slots=True)
class Claim:
    """A purchase admitted in memory, waiting for its batch to commit."""

    shopper_id: str
    item_ids: tuple[int, ...]
    key: str
    keyed: bool  # the shopper gave the key (a retry may come); else it was made up for this purchase

    @property
    def purchase_key(self) -> tuple[str, str]:
        return self.shopper_id, self.key


@dataclass(frozen=True, slots=True)
class Waiting:
    """The same purchase (same shopper and key) is already admitted: wait for its answer."""

    claim: Claim


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """A committed purchase, as the orders table holds it: enough to replay its result."""

    shopper_id: str
    key: str
    units: tuple[SoldUnit, ...]


@dataclass
class _Holding:
    committed: set[int] = field(default_factory=set)  # sizes the database has sold to the shopper
    claimed: dict[int, int] = field(default_factory=dict)  # sizes admitted, waiting: item -> pairs

    @property
    def pairs(self) -> int:
        return len(self.committed) + sum(self.claimed.values())

    def __contains__(self, item_id: object) -> bool:  # (the sizes it holds, without building their set)
        return item_id in self.committed or item_id in self.claimed


class SalesLedger:
    def __init__(self, product: Product, sales: Iterable[SaleRecord], max_pairs_per_product: int):
        self.product_id = product.id
        self._catalog = Catalog([product])
        self._max_pairs = max_pairs_per_product
        self._claimed_units: dict[int, int] = {item.id: 0 for item in product.items}
        self._holdings: dict[str, _Holding] = {}
        self._sales: dict[tuple[str, str], SaleRecord] = {}
        self._claims: dict[tuple[str, str], Claim] = {}
        for sale in sales:
            self._record(sale)

    # --- what the sales actor asks ---

    def admit(self, shopper_id: str, item_ids: list[int], key: str, keyed: bool) -> Claim | Waiting | PurchaseResult:
        """A claim to commit, the claim of the same purchase already waiting, or an answer now: a
        refusal, or the replay of a committed purchase with this key."""
        purchase_key = (shopper_id, key)
        if keyed and purchase_key not in self._sales and (claim := self._claims.get(purchase_key)) is not None:
            if list(claim.item_ids) != list(item_ids):
                return PurchaseResult.refused(Refusal.KEY_REUSED, item_ids[0])
            return Waiting(claim)
        answer = answer_purchase(item_ids, self._facts(shopper_id, item_ids, purchase_key if keyed else None),
                                 self._max_pairs)
        if answer is not None:
            return answer
        claim = Claim(shopper_id, tuple(item_ids), key, keyed)
        self.hold(claim)
        return claim

    def replay(self, claim: Claim) -> PurchaseResult | None:
        """The committed purchase of this claim's key, when it was sold already."""
        sale = self._sales.get(claim.purchase_key)
        return None if sale is None else replay(sale.units, list(claim.item_ids))

    def hold(self, claim: Claim) -> None:
        """Count a claim as waiting, without asking whether it fits: for claims admitted by an
        earlier ledger, carried over when the ledger is loaded again (the database still judges)."""
        holding = self._holdings.setdefault(claim.shopper_id, _Holding())
        for item_id in claim.item_ids:
            self._claimed_units[item_id] = self._claimed_units.get(item_id, 0) + 1
            holding.claimed[item_id] = holding.claimed.get(item_id, 0) + 1
        self._claims[claim.purchase_key] = claim

    def settle(self, claim: Claim, result: PurchaseResult | None) -> None:
        """The database's answer to a claim: its units sold, or refused; None when there was no
        answer (the database was away): the claim is let go, nothing sold."""
        self._claims.pop(claim.purchase_key, None)
        holding = self._holdings[claim.shopper_id]
        for item_id in claim.item_ids:
            self._claimed_units[item_id] -= 1
            holding.claimed[item_id] -= 1
            if not holding.claimed[item_id]:
                del holding.claimed[item_id]
        if result is not None and result.ok:
            self._record(SaleRecord(claim.shopper_id, claim.key, result.units))
            for change in result.changes:  # (a batch's results come without: it applies the batch's)
                self._catalog.apply(change)
        elif not holding.pairs:
            del self._holdings[claim.shopper_id]  # a shopper who holds nothing leaves nothing behind

    def apply(self, change: Change) -> bool:
        """A committed change to the product or one of its sizes (a sale, a restock, a release),
        applied when newer than what is held."""
        if not isinstance(change, InventoryChange) or change.product_id != self.product_id:
            return False  # (a cart, or another product)
        return self._catalog.apply(change)

    def catch_up(self, product: Product) -> None:
        """The product as a cache holds it (a snapshot): every part of it that is newer."""
        if product.id != self.product_id:
            return
        self._catalog.apply(product_state(product.id, product.released, product.version, product.release_at,
                                          product.sign_in_required, product.drop_mode))
        for item in product.items:
            if self._catalog.item(item.id) is not None:
                self._catalog.apply(AvailabilityChanged(item.id, product.id, item.available_count, item.version))

    def available(self, item_id: int) -> int:
        """Pairs that may still be claimed: the committed count less the claims waiting."""
        item = self._catalog.item(item_id)
        return 0 if item is None else item.available_count - self._claimed_units[item_id]

    @property
    def claims_waiting(self) -> int:
        return len(self._claims)

    @property
    def queued(self) -> bool:
        """Its product is sold through a queue: each claim needs its buyer's turn (the database's)."""
        return self._catalog.queued(self.product_id)

    @property
    def shoppers(self) -> int:
        """Shoppers it holds something of: it grows with the buyers, never with refusals."""
        return len(self._holdings)

    # --- inside ---

    def _facts(self, shopper_id: str, item_ids: list[int], purchase_key: tuple[str, str] | None) -> PurchaseFacts:
        """What memory knows of a purchase, for the rule that the database's purchase asks too."""
        released = self._catalog.released(self.product_id)
        sign_in_required = self._catalog.sign_in_required(self.product_id)
        drawn = self._catalog.drawn(self.product_id)  # (memory knows no winner: it refuses them all)
        queued = self._catalog.queued(self.product_id)  # (nor who was let in: the database decides)
        sizes = {}
        for item_id in item_ids:
            item = self._catalog.item(item_id)
            if item is not None:
                sizes[item_id] = SizeOnSale(self.product_id, released,
                                            item.available_count - self._claimed_units[item_id], sign_in_required,
                                            drawn, queued)
        sale = self._sales.get(purchase_key) if purchase_key is not None else None
        earlier = None if sale is None else sale.units
        holding = self._holdings.get(shopper_id)
        if holding is None:
            return PurchaseFacts(sizes, earlier=earlier, signed_in=signed_in(shopper_id))
        return PurchaseFacts(sizes, {self.product_id: holding.pairs}, holding, earlier, signed_in(shopper_id))

    def _record(self, sale: SaleRecord) -> None:
        self._sales[(sale.shopper_id, sale.key)] = sale
        holding = self._holdings.setdefault(sale.shopper_id, _Holding())
        holding.committed.update(unit.item_id for unit in sale.units)
