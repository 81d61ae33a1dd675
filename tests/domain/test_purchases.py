import pytest

from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.domain.purchases import (PurchaseFacts, PurchaseResult, Refusal, SizeOnSale, SoldUnit, answer_purchase,
                                         validate_purchase)


def test_a_sale_reports_the_newest_state_of_each_item():
    units = (SoldUnit(1, item_id=5, product_id=1, available_count=9, version=4),
             SoldUnit(2, item_id=3, product_id=1, available_count=0, version=8))
    result = PurchaseResult.sold(units)
    assert result.ok and result.refusal is None
    assert result.changes == (AvailabilityChanged(3, 1, 0, 8), AvailabilityChanged(5, 1, 9, 4))


def test_a_refusal_names_its_reason_and_item():
    result = PurchaseResult.refused(Refusal.SOLD_OUT, 7)
    assert not result.ok and result.units == () and result.changes == ()
    assert result.message == "item 7 is sold out"


@pytest.mark.parametrize(
    ("shopper", "items", "key", "error"),
    [("", [1], None, "shopper id"), ("s" * 65, [1], None, "shopper id"), ("s", [], None, "at least one"),
     ("s", list(range(21)), None, "at most"), ("s", ["1"], None, "whole numbers"), ("s", [True], None, "whole"),
     ("s", [1], "", "idempotency key"), ("s", [1], "k" * 129, "idempotency key")],
)
def test_malformed_purchases_are_rejected_before_the_database(shopper, items, key, error):
    with pytest.raises(ValueError, match=error):
        validate_purchase(shopper, items, key)


def test_a_shoppers_pairs_are_grouped_by_purchase_newest_first():
    from datetime import datetime, timezone

    from sneakers23.domain.purchases import BoughtPair, Order, orders_of

    at = datetime(2026, 11, 27, tzinfo=timezone.utc)
    pairs = [BoughtPair(5, 3, 1, "cart-2", at), BoughtPair(4, 1, 1, "cart-2", at), BoughtPair(2, 9, 1, "k", at)]
    assert orders_of(pairs) == [Order("cart-2", at, (3, 1)), Order("k", at, (9,))]


# The rule that both the sales ledger and the database's purchase ask: sizes 1 and 2 of product 1
# (on sale; size 2 has no pair left), size 7 of product 2 (not released), a limit of 2 pairs.
SIZES = {1: SizeOnSale(1, True, 3), 2: SizeOnSale(1, True, 0), 3: SizeOnSale(1, True, 5), 7: SizeOnSale(2, False, 4)}


def answer(item_ids, **facts):
    return answer_purchase(item_ids, PurchaseFacts(SIZES, **facts), max_pairs_per_product=2)


@pytest.mark.parametrize(("item_ids", "facts", "refusal", "item_id"), [
    ([9, 7], {}, Refusal.UNKNOWN_ITEM, 9),  # an unknown size before anything else
    ([7, 9], {}, Refusal.NOT_RELEASED, 7),  # each size in turn: unknown, not released, twice
    ([1, 1], {}, Refusal.LIMIT_REACHED, 1),  # one pair of a size
    ([1, 2], {}, Refusal.SOLD_OUT, 2),  # sold out only once every size is known, on sale and once
    ([1, 3, 2], {"pairs_held": {1: 2}}, Refusal.SOLD_OUT, 2),  # before the limit
    ([1, 3, 1], {}, Refusal.LIMIT_REACHED, 1),
    ([3], {"pairs_held": {1: 2}}, Refusal.LIMIT_REACHED, 3),  # the product's limit, then
    ([3, 1], {"sizes_held": {1}}, Refusal.LIMIT_REACHED, 1),  # a size held, on the size held
    ([1, 3, 2], {"earlier": None, "pairs_held": {1: 1}}, Refusal.SOLD_OUT, 2),
])
def test_a_purchase_is_refused_for_the_first_reason_in_the_rules_order(item_ids, facts, refusal, item_id):
    result = answer(item_ids, **facts)
    assert (result.refusal, result.refused_item_id) == (refusal, item_id)


def test_the_limit_counts_the_pairs_of_each_product_apart():
    three = {**SIZES, 7: SizeOnSale(2, True, 4), 8: SizeOnSale(2, True, 4)}
    facts = PurchaseFacts(three, pairs_held={1: 1, 2: 1})
    assert answer_purchase([1, 7], facts, 2) is None, "one more of each product"
    refused = answer_purchase([1, 7, 8], facts, 2)
    assert (refused.refusal, refused.refused_item_id) == (Refusal.LIMIT_REACHED, 7), "the first size of product 2"


def test_a_purchase_within_every_rule_may_be_sold():
    assert answer([1, 3]) is None
    assert answer([3], pairs_held={1: 1}, sizes_held={1}) is None


def test_a_key_sent_again_replays_its_purchase_whatever_has_changed_since():
    earlier = (SoldUnit(11, 1, 1, 2, 5), SoldUnit(12, 3, 1, 4, 6))
    replayed = answer([1, 3], earlier=earlier, pairs_held={1: 2}, sizes_held={1, 3})
    assert replayed.ok and replayed.replayed and replayed.units == earlier
    other = answer([3, 1], earlier=earlier)
    assert (other.refusal, other.refused_item_id) == (Refusal.KEY_REUSED, 3), "the same key for other sizes"


def test_a_sign_in_drop_sells_only_to_a_verified_account_after_the_release_is_checked():
    from sneakers23.domain.accounts import account_shopper_id
    from sneakers23.domain.purchases import signed_in

    drop = {1: SizeOnSale(1, True, 3, sign_in_required=True), 7: SizeOnSale(2, False, 4, sign_in_required=True)}
    guest = answer_purchase([1], PurchaseFacts(drop), 2)
    assert (guest.refusal, guest.refused_item_id) == (Refusal.SIGN_IN_REQUIRED, 1)
    assert "sign in" in guest.message
    assert answer_purchase([7], PurchaseFacts(drop), 2).refusal is Refusal.NOT_RELEASED  # (that first)
    assert answer_purchase([1], PurchaseFacts(drop, signed_in=True), 2) is None
    assert signed_in(account_shopper_id(5)) and not signed_in("a" * 64) and not signed_in("cli-1")
