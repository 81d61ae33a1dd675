"""The cart's rules and views: pure, in milliseconds."""

from dataclasses import replace

from sneakers23.domain.carts import (CartRefusal, cart_view, lines_for, refusal_message, refuse_from_memory,
                                     refuse_removal_from_memory)
from sneakers23.domain.catalog import Catalog
from sneakers23.domain.changes import Cart
from sneakers23.domain.shopper_events import CartUpdated, cart_differences
from tests.domain.test_catalog import item, product


def shop() -> Catalog:
    return Catalog([
        replace(product(1, 0, released=True), price_usd=120, items=(item(1, 1), item(2, 1, count=0), item(3, 1))),
        replace(product(2, 1), price_usd=140, items=(item(14, 2),)),
    ])


def lines(catalog: Catalog, item_ids):
    return lines_for(item_ids, catalog.item, catalog.product)


def test_memory_refuses_unknown_unreleased_and_sold_out_sizes_and_lets_the_rest_through():
    catalog = shop()

    def refused(item_id):
        held = catalog.item(item_id)
        return refuse_from_memory(held, None if held is None else catalog.product(held.product_id))

    assert refused(99) is CartRefusal.NOT_FOUND
    assert refused(14) is CartRefusal.NOT_RELEASED
    assert refused(2) is CartRefusal.SOLD_OUT
    assert refused(1) is None  # the database decides the rest (duplicates, the limit)


def test_lines_are_sorted_by_item_and_a_sold_out_size_is_marked_not_removed():
    view = cart_view(Cart("s", 4, (3, 2, 1)), lines(shop(), (3, 2, 1)))
    assert [line["item_id"] for line in view["items"]] == [1, 2, 3]
    assert [line["out_of_stock"] for line in view["items"]] == [False, True, False]
    assert view["count"] == 3 and view["version"] == 4
    assert view["subtotal_usd"] == 240  # the struck-through pair costs nothing
    assert view["items"][0] | {} == {"item_id": 1, "product_id": 1, "sku": "I1", "size": "9", "brand": "b",
                                     "name": "p1", "color": "c", "price_usd": 120, "image": "",
                                     "released": True, "out_of_stock": False}


def test_a_size_the_catalog_lost_is_left_out():
    assert [line.item_id for line in lines(shop(), (1, 77))] == [1]


def test_every_refusal_has_a_message_and_the_limit_names_the_number():
    assert all(refusal_message(refusal, 2) for refusal in CartRefusal)
    assert "2 pairs" in refusal_message(CartRefusal.LIMIT_REACHED, 2)


def test_a_catalog_keeps_the_newest_cart_and_counts_its_version():
    catalog = shop()
    total = catalog.version_total()
    assert catalog.cart("s") is None
    assert catalog.apply(Cart("s", 2, (1,)))
    assert not catalog.apply(Cart("s", 1, ()))  # late
    assert not catalog.apply(Cart("s", 2, (1,)))  # repeated
    assert catalog.apply(Cart("s", 3, (3, 1)))
    assert catalog.cart("s").item_ids == (3, 1)
    assert catalog.version_total() == total + 3


def test_reconcile_takes_new_carts_without_a_reload():
    catalog = shop()
    applied, consistent = catalog.reconcile([Cart("new", 1, (1,))])
    assert consistent and applied == [Cart("new", 1, (1,))]
    assert catalog.cart("new").item_ids == (1,)


def test_carts_that_differ_between_snapshots_are_told():
    before = [Cart("a", 1, (1,)), Cart("b", 2, (2,)), Cart("gone", 4, (2,))]
    after = [Cart("a", 1, (1,)), Cart("b", 3, (1,)), Cart("c", 1, (3,))]
    assert cart_differences(before, after) == [
        CartUpdated("b", Cart("b", 3, (1,))), CartUpdated("c", Cart("c", 1, (3,))),
        # emptied meanwhile (memory keeps no empty cart): shown empty, past the version its tabs hold
        CartUpdated("gone", Cart("gone", 5, ()))]
    assert Cart.new("x") == Cart("x", 0, ()) and Cart.new("x").is_empty
    assert Cart("x", 3, (5, 2)).emptied() == Cart("x", 4, ()) and Cart("x", 3, (5, 2)).holds(2)


def test_an_emptied_cart_is_forgotten_and_counts_for_nothing():
    catalog = shop()
    total = catalog.version_total()
    assert catalog.apply(Cart("s", 1, (1,)))
    assert catalog.apply(Cart("s", 2, ()))  # emptied: forgotten
    assert catalog.cart("s") is None and catalog.carts() == []
    assert catalog.version_total() == total  # (the database's total counts only carts holding something)
    assert catalog.apply(Cart("other", 2, ()))  # news (a tab may show what memory missed)...
    assert catalog.cart("other") is None and catalog.version_total() == total  # ...that takes no memory
    assert Catalog([], [Cart("e", 3, ()), Cart("f", 1, (2,))]).carts() == [Cart("f", 1, (2,))]


def test_a_late_change_of_a_forgotten_cart_is_mended_by_the_database_rows():
    catalog = shop()
    total = catalog.version_total()
    catalog.apply(Cart("s", 1, (1,)))
    catalog.apply(Cart("s", 2, ()))
    assert catalog.apply(Cart("s", 1, (1,)))  # late: memory no longer knows it was emptied
    assert catalog.version_total() == total + 1  # ahead of the database: anti-entropy reads the rows
    applied, consistent = catalog.reconcile([Cart("s", 2, ())])
    assert consistent and applied == [Cart("s", 2, ())]
    assert catalog.cart("s") is None and catalog.version_total() == total


def test_a_full_read_forgets_the_carts_emptied_unseen_but_not_those_changed_while_it_ran():
    catalog = shop()
    for shopper in ("missed", "read", "new"):
        catalog.apply(Cart(shopper, 3, (1,)))
    # The database's carts that hold something: "missed" was emptied (that change never came);
    # "new" was made after the rows were read, and its change applied meanwhile.
    applied, consistent = catalog.reconcile([Cart("read", 3, (1,))], every_cart=True, touched={"new"})
    assert consistent and applied == [Cart("missed", 4, ())]
    assert {cart.shopper_id for cart in catalog.carts()} == {"read", "new"}


def test_settling_applies_requests_in_order_and_only_changes_move_the_version():
    from sneakers23.domain.carts import CartRequest, HeldCart, SizeFacts, settle

    sizes = {1: SizeFacts(1, True, 10), 2: SizeFacts(1, True, 10), 3: SizeFacts(1, True, 10), 4: SizeFacts(2, True, 0)}
    carts = {"s": HeldCart(5, [(2, 1)])}
    outcomes = settle([CartRequest("s", add=1), CartRequest("s", add=4), CartRequest("s", add=3),
                       CartRequest("s", remove=(2,)), CartRequest("s", add=3), CartRequest("s", remove=(7,))],
                      carts, sizes, bought={}, owned=set(), max_pairs=2)
    assert outcomes == [Cart("s", 6, (1, 2)), CartRefusal.SOLD_OUT, CartRefusal.LIMIT_REACHED,
                        Cart("s", 7, (1,)), Cart("s", 8, (3, 1)), Cart("s", 8, (3, 1))]
    bought_one = settle([CartRequest("t", add=1), CartRequest("t", add=2)], {"t": HeldCart(0, [])}, sizes,
                        bought={("t", 1): 1}, owned={("t", 2)}, max_pairs=2)
    assert bought_one == [Cart("t", 1, (1,)), CartRefusal.ALREADY_BOUGHT]


def test_a_removal_is_refused_from_memory_unless_the_tab_was_answered_with_a_newer_cart_holding_it():
    cart = Cart("s", 3, (1,))
    assert refuse_removal_from_memory(cart, 1) is None  # in the cart: the database removes it
    assert refuse_removal_from_memory(cart, 2) is CartRefusal.NOT_IN_CART
    assert refuse_removal_from_memory(cart, 2, seen=Cart("s", 3, (1,))) is CartRefusal.NOT_IN_CART
    # The tab was answered with version 4 holding size 2 (its own add, not yet replicated here).
    assert refuse_removal_from_memory(cart, 2, seen=Cart("s", 4, (2, 1))) is None
    assert refuse_removal_from_memory(Cart.new("s"), 2, seen=Cart("s", 1, (2,))) is None
    # Its own removal emptied the cart (memory forgot it): removing again is refused from memory.
    assert refuse_removal_from_memory(Cart.new("s"), 2, seen=Cart("s", 2, ())) is CartRefusal.NOT_IN_CART


def test_a_cart_filled_before_sign_in_merges_oldest_first_then_empties():
    from sneakers23.domain.carts import CartRequest, merge_requests

    guest = Cart("g" * 64, 4, (9, 7, 5))  # newest first
    assert merge_requests(guest, "account-1") == [
        CartRequest("account-1", add=5), CartRequest("account-1", add=7), CartRequest("account-1", add=9),
        CartRequest("g" * 64, remove=(9, 7, 5))]
    assert merge_requests(Cart.new("g" * 64), "account-1") == []
    assert merge_requests(Cart("account-1", 2, (3,)), "account-1") == []  # (already the account's)
