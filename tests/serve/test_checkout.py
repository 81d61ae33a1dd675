"""Checkout over HTTP on the session's store: the original's pages and messages, all or nothing
through the drop engine, and one purchase however often the same cart is sent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from sneakers23.serve.shoppers import COOKIE, form_token_in
from tests.serve.test_carts import new_shopper, sizes_in_stock
from harness import shop
from harness.waiting import wait_for


def checkout(store_url: str, cookie: str | None, form: dict | str) -> httpx.Response:
    """POST /checkout as the shopper's browser does: a form (a dict) carries the form token that the
    shopper's checkout page holds; a raw body is sent as it is."""
    cookies = {COOKIE: cookie} if cookie else {}
    token = form_token_in(httpx.get(f"{store_url}/checkout", cookies=cookies).text) if cookie else None
    if isinstance(form, dict) and token:
        form = {"csrf_token": token, **form}
    return httpx.post(f"{store_url}/checkout", data=form if isinstance(form, dict) else None,
                      content=form if isinstance(form, str) else None, cookies=cookies, timeout=30,
                      headers={} if isinstance(form, dict) else {"Content-Type": "application/x-www-form-urlencoded"})


def cart_page(store_url: str, cookie: str) -> str:
    response = httpx.get(f"{store_url}/checkout", cookies={COOKIE: cookie})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store, must-revalidate"
    return response.text


def shown(store_url: str, cookie: str, version: int) -> None:
    """Until this node's memory holds the cart at `version` (replication is a moment behind)."""
    wait_for(lambda: f'name="version" value="{version}"' in cart_page(store_url, cookie), what=f"cart version {version}")


@pytest.fixture
def publishing(ray_settings):
    inventory = Inventory(ray_settings, replication=RayReplication())
    yield inventory
    inventory.close()


def test_the_checkout_page_lists_the_cart_and_says_what_is_sold_out(store_url, fresh_shop, publishing):
    publishing.release(1)
    first, second = sizes_in_stock(fresh_shop, 1, 2)
    shopper_id, cookie, _token = new_shopper()
    assert "Your cart is empty" in cart_page(store_url, cookie)
    publishing.add_to_cart(shopper_id, first)
    cart = publishing.add_to_cart(shopper_id, second)
    shown(store_url, cookie, cart.version)
    page = cart_page(store_url, cookie)
    assert page.count('class="checkout__item"') == 2 and ">PURCHASE</button>" in page
    assert "Sorry, this shoe is sold out" not in page
    shop.set_available(fresh_shop, first, 1)
    publishing.sell(first, 1)
    wait_for(lambda: "Sorry, this shoe is sold out" in cart_page(store_url, cookie), what="the sold-out line")
    page = cart_page(store_url, cookie)
    assert "disabled>SOME ITEMS NOT AVAILABLE</button>" in page and ">PURCHASE<" not in page
    # Posted anyway: refused with the original's message, and nothing sold.
    refused = checkout(store_url, cookie, {"version": cart.version, "item_ids": f"{first},{second}"})
    assert refused.status_code == 409 and "Your cart has out-of-stock shoes" in refused.text
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 0


def test_refusals_come_with_the_originals_messages(store_url, fresh_shop, publishing):
    publishing.release(1)
    unreleased = sizes_in_stock(fresh_shop, 2, 1)[0]
    (size,) = sizes_in_stock(fresh_shop, 1, 1)
    shopper_id, cookie, _token = new_shopper()
    empty = checkout(store_url, cookie, {"version": 0, "item_ids": ""})
    assert empty.status_code == 409 and "Your cart is empty" in empty.text
    not_yet = checkout(store_url, cookie, {"version": 0, "item_ids": f"{size},{unreleased}"})
    assert not_yet.status_code == 409 and "Your cart has unreleased shoes" in not_yet.text
    # What only the drop engine can tell: the cart holds two pairs, and a third was bought meanwhile.
    first, second, third = sizes_in_stock(fresh_shop, 1, 3)
    publishing.add_to_cart(shopper_id, first)
    cart = publishing.add_to_cart(shopper_id, second)
    assert publishing.purchase(shopper_id, [third]).ok
    shown(store_url, cookie, cart.version)
    failed = checkout(store_url, cookie, {"version": cart.version, "item_ids": f"{first},{second}"})
    assert failed.status_code == 409 and "Your purchase could not be completed" in failed.text
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 1  # the third pair alone


def test_a_checkout_page_left_behind_by_a_change_in_another_tab_buys_nothing(store_url, fresh_shop, publishing):
    publishing.release(1)
    first, second = sizes_in_stock(fresh_shop, 1, 2)
    shopper_id, cookie, _token = new_shopper()
    publishing.add_to_cart(shopper_id, first)
    shown_then = publishing.add_to_cart(shopper_id, second)  # the checkout page shows both
    now = publishing.remove_from_cart(shopper_id, [second])  # another tab takes one out
    stale = checkout(store_url, cookie, {"version": shown_then.version, "item_ids": f"{first},{second}"})
    assert stale.status_code == 409 and "Your cart changed in another tab" in stale.text
    assert f'name="version" value="{now.version}"' in stale.text  # the cart as it is now, from the database
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 0
    bought = checkout(store_url, cookie, {"version": now.version, "item_ids": f"{first}"})
    assert bought.status_code == 200 and "Order Complete!" in bought.text


@pytest.mark.parametrize("cookie, form, status", [
    (None, {"version": 1, "item_ids": "1"}, 401),
    ("forged", {"version": 1, "item_ids": "1"}, 401),
    ("shopper", {"version": "x", "item_ids": "1"}, 400),
    ("shopper", {"item_ids": "1"}, 400),
    ("shopper", {"version": 1, "item_ids": "1,a"}, 400),
    ("shopper", {"version": 1, "item_ids": ",".join(["1"] * 21)}, 400),
    ("shopper", "version=1&item_ids=" + "1" * 5000, 413),  # (refused at the door, before it is read)
    ("shopper", {"version": "9" * 200, "item_ids": "1"}, 400),
    ("shopper", {"version": -1, "item_ids": "1"}, 400),
])
def test_bad_checkout_input_gets_a_clear_status_and_the_store_keeps_serving(store_url, fresh_shop, cookie, form, status):
    if cookie == "shopper":
        cookie = new_shopper()[1]
    response = checkout(store_url, cookie, form)
    assert response.status_code == status
    if status == 413:
        assert response.json()["error"] == "too_large"
    else:
        assert 'data-checkout-message' in response.text
    assert httpx.get(f"{store_url}/healthz").status_code == 200


def test_the_same_cart_sent_many_times_at_once_is_one_purchase_and_clears_the_cart(store_url, fresh_shop, publishing):
    publishing.release(1)
    first, second = sizes_in_stock(fresh_shop, 1, 2)
    shopper_id, cookie, _token = new_shopper()
    publishing.add_to_cart(shopper_id, first)
    cart = publishing.add_to_cart(shopper_id, second)
    shown(store_url, cookie, cart.version)
    form = {"version": cart.version, "item_ids": f"{first},{second}"}
    # A double-click, a retry and a second tab: the same form, six times at once.
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: checkout(store_url, cookie, form), range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert all("Order Complete!" in r.text for r in responses)
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 2
    assert fresh_shop.cart(shopper_id).item_ids == ()
    # Sent again later, after the cart was cleared: the same order, replayed.
    again = checkout(store_url, cookie, form)
    assert again.status_code == 200 and "Order Complete!" in again.text
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 2
    orders = httpx.get(f"{store_url}/orders", cookies={COOKIE: cookie}).text
    assert orders.count('class="order"') == 1 and orders.count('class="checkout__item"') == 2


def test_the_orders_page_of_a_new_shopper(store_url, fresh_shop):
    page = httpx.get(f"{store_url}/orders")
    assert page.status_code == 200 and "You have not bought anything yet." in page.text


def test_the_catalog_page_carries_a_cart_token_for_its_own_shopper(store_url, fresh_shop):
    from sneakers23.serve.shoppers import CartTokens, ShopperCookies
    from tests.support.store_fixtures import STORE_SECRET

    first = httpx.get(store_url)
    shopper_id = ShopperCookies(STORE_SECRET).read(first.cookies[COOKIE])
    assert f'data-cart-id="{shopper_id}"' in first.text
    token = first.text.split('data-cart-token="')[1].split('"')[0]
    assert CartTokens(STORE_SECRET).read(token) == (shopper_id, "")
    second = httpx.get(store_url, cookies={COOKIE: first.cookies[COOKIE]})
    assert f'data-cart-id="{shopper_id}"' in second.text and COOKIE not in second.cookies
