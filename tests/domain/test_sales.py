"""The sales ledger: admission in memory, with the database's refusals, in the database's order."""

from __future__ import annotations

from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.changes import AvailabilityChanged, ProductReleased
from sneakers23.domain.purchases import PurchaseResult, Refusal, SoldUnit
from sneakers23.domain.sales import Claim, SaleRecord, SalesLedger, Waiting


def product(released: bool = True, counts: dict[int, int] | None = None) -> Product:
    counts = counts or {1: 2, 2: 5, 3: 0}
    items = tuple(Item(item_id, f"SKU{item_id}", str(item_id), 7, count, 1) for item_id, count in counts.items())
    return Product(7, "SKU", 0, "Brand", "Name", "color", 100, "/x.svg", released, 1, items)


def sold(claim: Claim, count_after: int, version: int, order_id: int = 1) -> PurchaseResult:
    return PurchaseResult.sold(tuple(SoldUnit(order_id + line, item_id, 7, count_after, version)
                                     for line, item_id in enumerate(claim.item_ids)))


def test_refusals_come_from_memory_in_the_databases_order():
    ledger = SalesLedger(product(), [], max_pairs_per_product=2)
    assert ledger.admit("a", [99], "k1", True).refusal is Refusal.UNKNOWN_ITEM
    assert ledger.admit("a", [3], "k2", True).refusal is Refusal.SOLD_OUT
    assert ledger.admit("a", [1, 1], "k3", True).refusal is Refusal.LIMIT_REACHED  # one pair per size
    too_many = ledger.admit("a", [1, 2, 3], "k4", True)  # sold out is told before the limit
    assert (too_many.refusal, too_many.refused_item_id) == (Refusal.SOLD_OUT, 3)
    assert ledger.admit("a", [1, 2], "k5", True) == Claim("a", (1, 2), "k5", True)
    refused = ledger.admit("a", [2], "k6", True)
    assert (refused.refusal, refused.refused_item_id) == (Refusal.LIMIT_REACHED, 2)  # two pairs, waiting
    unreleased = SalesLedger(product(released=False), [], 2)
    assert unreleased.admit("a", [1], "k", True).refusal is Refusal.NOT_RELEASED


def test_claims_hold_stock_until_the_database_answers():
    ledger = SalesLedger(product(counts={1: 2}), [], 2)
    first, second = ledger.admit("a", [1], "k", False), ledger.admit("b", [1], "k", False)
    assert isinstance(first, Claim) and isinstance(second, Claim)
    assert ledger.available(1) == 0 and ledger.claims_waiting == 2
    assert ledger.admit("c", [1], "k", False).refusal is Refusal.SOLD_OUT  # claimed, not sold: still out
    ledger.settle(first, sold(first, 1, 2))
    ledger.settle(second, None)  # no answer from the database: let go, nothing sold
    assert ledger.available(1) == 1 and ledger.claims_waiting == 0
    third = ledger.admit("c", [1], "k", False)
    assert isinstance(third, Claim)
    assert ledger.admit("a", [1], "k2", False).refusal is Refusal.SOLD_OUT  # told before the limit
    ledger.settle(third, None)
    assert ledger.admit("a", [1], "k2", False).refusal is Refusal.LIMIT_REACHED  # a holds size 1 now


def test_a_shopper_whose_claims_came_to_nothing_leaves_nothing_behind():
    ledger = SalesLedger(product(counts={1: 1, 2: 5}), [], 2)
    minted = [ledger.admit(f"minted-{n}", [2], "k", False) for n in range(3)]
    buyer = ledger.admit("buyer", [1], "k", False)
    for claim in minted:
        ledger.settle(claim, None)  # refused (or no answer): nothing sold
    ledger.settle(buyer, sold(buyer, 0, 2))
    assert ledger.shoppers == 1 and ledger.claims_waiting == 0


def test_a_key_replays_its_committed_purchase_or_waits_for_it():
    ledger = SalesLedger(product(), [], 2)
    claim = ledger.admit("a", [2], "key", True)
    assert ledger.admit("a", [2], "key", True) == Waiting(claim)
    assert ledger.admit("a", [1], "key", True).refusal is Refusal.KEY_REUSED
    result = sold(claim, 4, 2, order_id=17)
    ledger.settle(claim, result)
    replay = ledger.admit("a", [2], "key", True)
    assert replay.ok and replay.replayed and replay.units == result.units
    assert ledger.admit("a", [1], "key", True).refusal is Refusal.KEY_REUSED
    assert ledger.available(2) == 4


def test_what_the_database_holds_at_load_counts():
    units = (SoldUnit(1, 1, 7, 1, 2), SoldUnit(2, 2, 7, 4, 2))
    ledger = SalesLedger(product(), [SaleRecord("a", "key", units)], 2)
    assert ledger.admit("a", [1, 2], "key", True).replayed
    assert ledger.admit("a", [2], "other", True).refusal is Refusal.LIMIT_REACHED


def test_changes_move_it_only_forward():
    ledger = SalesLedger(product(released=False, counts={1: 0}), [], 2)
    assert ledger.apply(ProductReleased(7, True, 2))
    assert ledger.admit("a", [1], "k", False).refusal is Refusal.SOLD_OUT
    assert ledger.apply(AvailabilityChanged(1, 7, 10, 5))  # restocked elsewhere
    assert not ledger.apply(AvailabilityChanged(1, 7, 0, 4))  # an older change, late
    assert not ledger.apply(AvailabilityChanged(9, 8, 10, 9))  # another product's
    assert ledger.available(1) == 10
    claim = ledger.admit("a", [1], "k", False)
    ledger.catch_up(product(counts={1: 3}))  # a snapshot older than what is held: nothing moves
    assert ledger.available(1) == 9
    ledger.hold(Claim("b", (1,), "k", False))  # carried over from an earlier ledger
    assert ledger.available(1) == 8
    ledger.settle(claim, None)
    assert ledger.available(1) == 9


def test_a_sign_in_drop_is_refused_to_guests_from_memory_and_follows_its_setting():
    from dataclasses import replace

    ledger = SalesLedger(replace(product(), sign_in_required=True), [], max_pairs_per_product=2)
    assert ledger.admit("a" * 64, [1], "k1", True).refusal is Refusal.SIGN_IN_REQUIRED
    assert isinstance(ledger.admit("account-7", [1], "k2", True), Claim)
    assert ledger.apply(ProductReleased(7, True, 2, None, sign_in_required=False))  # the staff allow guests
    assert isinstance(ledger.admit("a" * 64, [2], "k3", True), Claim)
    assert not ledger.apply(ProductReleased(7, True, 2, None, sign_in_required=True))  # (not newer)
    assert ledger.apply(ProductReleased(7, True, 3, None, sign_in_required=True))
    assert ledger.admit("b" * 64, [2], "k4", True).refusal is Refusal.SIGN_IN_REQUIRED
