import pytest

from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.domain.purchases import PurchaseResult, Refusal, SoldUnit, validate_purchase


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
