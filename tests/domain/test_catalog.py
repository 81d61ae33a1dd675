from dataclasses import replace

from sneakers23.domain.catalog import Catalog, Item, Product, complete_products
from sneakers23.domain.changes import AvailabilityChanged, ProductReleased
from sneakers23.domain.levels import Level


def product(id, order, released=False, version=1):
    return Product(id=id, sku=f"P{id}", order=order, brand="b", name=f"p{id}", color="c", price_usd=100,
                   main_image_url="", released=released, version=version)


def item(id, product_id, count=300, version=1):
    return Item(id=id, sku=f"I{id}", size="9", product_id=product_id, available_count=count, version=version)


def test_products_sorted_by_order_then_id_and_items_by_id():
    products = [product(3, order=1), product(1, order=5), product(2, order=1)]
    items = [item(9, 1), item(4, 2), item(7, 1), item(5, 3), item(2, 1)]
    view = complete_products(products, items)
    assert [p.id for p in view] == [2, 3, 1]
    assert [[i.id for i in p.items] for p in view] == [[4], [5], [2, 7, 9]]


def test_a_product_without_items_has_none():
    assert complete_products([product(1, 0)], []) == [product(1, 0)]


def test_item_level_follows_its_count():
    assert item(1, 1, count=0).level is Level.OUT
    assert item(1, 1, count=149).level is Level.LOW


def catalog():
    return Catalog([replace(product(1, 0), items=(item(1, 1), item(2, 1)))])


def test_newer_changes_apply_and_older_or_repeated_ones_do_not():
    c = catalog()
    assert c.apply(AvailabilityChanged(item_id=1, product_id=1, available_count=250, version=3))
    assert not c.apply(AvailabilityChanged(item_id=1, product_id=1, available_count=260, version=2))  # late
    assert not c.apply(AvailabilityChanged(item_id=1, product_id=1, available_count=250, version=3))  # duplicate
    assert c.item(1).available_count == 250 and c.item(1).version == 3
    assert c.apply(ProductReleased(product_id=1, released=True, version=2))
    assert not c.apply(ProductReleased(product_id=1, released=True, version=2))
    assert c.product(1).released


def test_any_order_of_the_same_changes_ends_in_the_same_state():
    changes = [AvailabilityChanged(item_id=2, product_id=1, available_count=300 - v, version=v) for v in range(2, 12)]
    changes += [ProductReleased(product_id=1, released=True, version=2)]
    forward, backward, doubled = catalog(), catalog(), catalog()
    for change in changes:
        forward.apply(change)
    for change in reversed(changes):
        backward.apply(change)
    for change in changes + changes[::2]:
        doubled.apply(change)
    assert forward.products() == backward.products() == doubled.products()
    assert forward.item(2).available_count == 289 and forward.item(2).version == 11


def test_changes_for_unknown_rows_are_ignored():
    assert not catalog().apply(AvailabilityChanged(item_id=99, product_id=1, available_count=1, version=9))
    assert not catalog().apply(ProductReleased(product_id=99, released=True, version=9))


def test_reconcile_applies_what_was_missed_and_says_when_only_a_reload_helps():
    c = catalog()
    assert c.version_total() == 3
    missed = AvailabilityChanged(item_id=2, product_id=1, available_count=7, version=5)
    current = [ProductReleased(1, False, 1), AvailabilityChanged(1, 1, 300, 1), missed]
    assert c.reconcile(current) == ([missed], True)
    assert c.item(2).available_count == 7 and c.version_total() == 7
    assert c.reconcile(current) == ([], True)
    read_before_a_newer_change = [AvailabilityChanged(2, 1, 9, 4)]  # the cache holds version 5
    assert c.reconcile(read_before_a_newer_change) == ([], True)
    assert c.item(2).available_count == 7
    assert c.reconcile([AvailabilityChanged(42, 1, 5, 1)])[1] is False  # unknown here: reload
