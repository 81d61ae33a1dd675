from dataclasses import replace

from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.levels import Level
from sneakers23.domain.shopper_events import (
    ProductWentOnSale, ReleaseScheduled, StockChanged, differences, release_change, stock_change,
)


def item(count, id=1):
    return Item(id=id, sku="S", size="9", product_id=7, available_count=count, version=1)


def product(released, items=()):
    return Product(id=7, sku="P", order=0, brand="b", name="n", color="c", price_usd=1, main_image_url="",
                   released=released, version=1, items=tuple(items))


def test_the_same_level_is_not_pushed():
    assert stock_change(item(400), item(399)) is None
    assert stock_change(item(1000), item(500)) is None


def test_a_level_change_is_pushed():
    assert stock_change(item(500), item(499)) == StockChanged(7, 1, Level.MEDIUM)
    assert stock_change(item(150), item(149)) == StockChanged(7, 1, Level.LOW)


def test_any_change_that_leaves_a_size_out_is_pushed():
    assert stock_change(item(1), item(0)) == StockChanged(7, 1, Level.OUT)
    assert stock_change(item(0), item(0)) == StockChanged(7, 1, Level.OUT)


def test_a_release_is_pushed_once():
    assert release_change(product(False), product(True)) == ProductWentOnSale(7)
    assert release_change(product(True), product(True)) is None
    assert release_change(product(False), product(False)) is None


def test_a_new_release_time_is_pushed():
    from datetime import datetime, timezone

    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert release_change(product(False), replace(product(False), release_at=at)) == ReleaseScheduled(7)
    assert release_change(replace(product(False), release_at=at), product(False)) == ReleaseScheduled(7)
    assert release_change(replace(product(False), release_at=at), replace(product(True), release_at=at)) == \
        ProductWentOnSale(7)


def test_differences_take_a_page_from_one_state_to_another():
    before = [product(False, [item(600, 1), item(10, 2), item(300, 3)])]
    after = [product(True, [item(590, 1), item(0, 2), item(100, 3)])]
    assert differences(before, after) == [
        ProductWentOnSale(7), StockChanged(7, 2, Level.OUT), StockChanged(7, 3, Level.LOW),
    ]
    assert differences(after, after) == []
    assert differences(after, [replace(after[0], released=False)]) == []
