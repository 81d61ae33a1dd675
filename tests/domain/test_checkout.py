"""Checkout's rules: pure, in milliseconds."""

from sneakers23.domain.changes import Cart
from sneakers23.domain.checkout import (CHECKOUT_MESSAGES, CheckoutRefusal, Refused, checkout_key, checkout_refusal,
                                        is_the_cart)
from tests.domain.test_carts import lines, shop


def test_checkout_refusals_come_in_the_originals_order():
    catalog = shop()
    assert checkout_refusal([], []) is CheckoutRefusal.EMPTY
    assert checkout_refusal(lines(catalog, (2, 14)), [2, 14]) is CheckoutRefusal.OUT_OF_STOCK  # before unreleased
    assert checkout_refusal(lines(catalog, (1, 14)), [1, 14]) is CheckoutRefusal.UNRELEASED
    assert checkout_refusal(lines(catalog, (1, 3)), [1, 3]) is None
    assert checkout_refusal(lines(catalog, (1, 77)), [1, 77]) is CheckoutRefusal.FAILED, "a size the shop lost"
    assert checkout_refusal(lines(catalog, (3, 1, 3)), [3, 1, 3]) is CheckoutRefusal.FAILED, "a size posted twice"
    assert CHECKOUT_MESSAGES[CheckoutRefusal.EMPTY] == "Your cart is empty"
    assert CHECKOUT_MESSAGES[CheckoutRefusal.OUT_OF_STOCK] == "Your cart has out-of-stock shoes"
    assert CHECKOUT_MESSAGES[CheckoutRefusal.UNRELEASED] == "Your cart has unreleased shoes"
    assert CHECKOUT_MESSAGES[CheckoutRefusal.FAILED] == "Your purchase could not be completed"


def test_each_cart_version_has_its_own_checkout_key():
    assert checkout_key(7) == checkout_key(7) != checkout_key(8)


def test_a_form_is_the_cart_only_at_its_version_with_its_sizes():
    cart = Cart("s", 4, (3, 1))
    assert is_the_cart(cart, 4, [1, 3]) and is_the_cart(cart, 4, [1, 3, 3])
    assert not is_the_cart(cart, 3, [1, 3]), "an older version"
    assert not is_the_cart(cart, 4, [1]), "other sizes"


def test_a_refusal_says_why_and_what_went_wrong():
    assert Refused(CheckoutRefusal.FAILED, detail="item 3 is sold out").message == \
        "Your purchase could not be completed (item 3 is sold out)"
    assert Refused(CheckoutRefusal.EMPTY).message == "Your cart is empty"
