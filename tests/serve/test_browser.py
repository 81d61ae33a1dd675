"""What shoppers see, in a real browser (the machine's Chromium, headless, driven by Playwright)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import expect
from ray import serve

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from harness import shop

JOINED = "() => window.sneakers23 && Object.values(window.sneakers23.channels).every(c => c.state === 'joined')"


def open_store(page, store_url):
    page.goto(store_url)
    page.wait_for_function(JOINED)
    page.evaluate("() => { window.notReloaded = true }")


def assert_not_reloaded(page):
    assert page.evaluate("() => window.notReloaded === true")


def test_releasing_a_product_shows_its_sizes_without_a_reload(page, store_url, fresh_shop, ray_settings):
    open_store(page, store_url)
    assert page.locator(".product-soon-2").count() == 1
    Inventory(ray_settings, replication=RayReplication()).release(2)
    page.wait_for_selector('[data-sizes-for="2"] .size-container__entry', timeout=10_000)
    assert page.locator(".product-soon-2").count() == 0
    assert page.locator('[data-sizes-for="2"] .size-container__entry').count() == 13
    assert page.locator(".product-soon-1").count() == 1  # the other product is still coming
    assert_not_reloaded(page)
    assert page.console_messages == []


def test_selling_a_size_to_zero_turns_its_button_out_without_a_reload(page, store_url, fresh_shop, ray_settings):
    inventory = Inventory(ray_settings, replication=RayReplication())
    inventory.release(1)
    item = max(fresh_shop.complete_products()[0].items, key=lambda i: i.available_count)
    open_store(page, store_url)
    button = page.locator(f'.size-container__entry[value="{item.id}"]')
    assert button.is_enabled() and "--level-out" not in button.get_attribute("class")
    shop.set_available(fresh_shop, item.id, 3)
    page.wait_for_selector(f'.size-container__entry--level-low[value="{item.id}"]', timeout=10_000)  # healed
    inventory.sell(item.id, 3)
    page.wait_for_selector(f'.size-container__entry--level-out[value="{item.id}"]', timeout=10_000)
    assert button.is_disabled()
    assert_not_reloaded(page)
    assert page.console_messages == []


def test_a_page_that_lost_its_socket_during_a_release_catches_up_when_it_reconnects(
    page, store_url, fresh_shop, ray_settings
):
    open_store(page, store_url)
    # The server drops every socket and refuses new ones for 3 s: the release happens in between.
    # (Serve handles block, which Playwright's event loop in this thread forbids: another thread.)
    with ThreadPoolExecutor(1) as thread:
        dropped = thread.submit(lambda: serve.get_app_handle("channels").broadcast("drop_sockets", 3.0).results()).result()
    assert sum(dropped) >= 1  # every node's channel replica drops its sockets
    page.wait_for_function("() => !window.sneakers23.socket.isConnected()")
    Inventory(ray_settings, replication=RayReplication()).release(2)
    assert page.locator(".product-soon-2").count() == 1  # nothing could reach the page
    page.wait_for_selector('[data-sizes-for="2"] .size-container__entry', timeout=20_000)
    assert page.locator(".product-soon-2").count() == 0
    assert_not_reloaded(page)


def test_a_scheduled_release_counts_down_and_opens_on_time(page, store_url, fresh_shop, ray_settings):
    from datetime import datetime, timedelta, timezone

    from sneakers23.domain.purchases import Refusal

    inventory = Inventory(ray_settings, replication=RayReplication())
    at = datetime.now(timezone.utc) + timedelta(seconds=6)
    inventory.require_sign_in(2, False)  # (the staff's choice: a new drop scheduled asks for sign-in otherwise)
    scheduled = inventory.schedule_release(2, at)
    assert not scheduled.sign_in_required
    open_store(page, store_url)
    page.wait_for_selector(".product-soon-2 .product-soon__countdown:has-text('on sale in')", timeout=10_000)
    assert inventory.purchase("early-bird", [14]).refusal is Refusal.NOT_RELEASED  # the database refuses
    page.wait_for_selector('[data-sizes-for="2"] .size-container__entry', timeout=20_000)
    assert datetime.now(timezone.utc) >= at
    assert_not_reloaded(page)
    product = next(p for p in fresh_shop.complete_products() if p.id == 2)
    assert product.released and product.version == scheduled.version + 1  # released once
    in_stock = next(i.id for i in product.items if i.available_count > 0)
    assert inventory.purchase("on-time", [in_stock]).ok


# --- the cart and the checkout -----------------------------------------------------------------

CART_JOINED = "() => window.sneakers23 && window.sneakers23.cart() && window.sneakers23.cart().state === 'joined'"


def open_shop(page, url):
    open_store(page, url)
    page.wait_for_function(CART_JOINED)


def released_sizes(inventory, ray_settings, count: int, product_id: int = 1) -> list:
    Inventory(ray_settings, replication=RayReplication()).release(product_id)
    product = next(p for p in inventory.complete_products() if p.id == product_id)
    return [item for item in product.items if item.available_count > 0][:count]


def add_to_cart(page, item_id: int, count_after: int):
    page.click(f'.size-container__entry[value="{item_id}"]')
    expect(page.locator(".cart__title")).to_have_text(f"Cart {count_after}")


def cart_line(page, item_id: int):
    return page.locator(f'.cart__item[data-item-id="{item_id}"]')


def shopper_of(page) -> str:
    return page.locator("[data-cart]").get_attribute("data-cart-id")


def sell_from_the_cli(ray_cluster, ray_settings, tmp_path, item_id: int, count: int):
    from tests.support.store_process import cli, clean_env

    env = clean_env(SNEAKERS23_DATABASE_URL=ray_settings.database_url, SNEAKERS23_CLUSTER=ray_cluster.address,
                    RAY_TMPDIR=os.environ["RAY_TMPDIR"])
    done = cli("sell", str(item_id), "--count", str(count), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_sizes_added_show_cart_2_and_the_subtotal(page, store_url, fresh_shop, ray_settings):
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    open_shop(page, store_url)
    expect(page.locator(".cart__title")).to_have_text("Cart 0")
    add_to_cart(page, first.id, 1)
    add_to_cart(page, second.id, 2)
    expect(page.locator("[data-cart-subtotal]")).to_have_text("$240")
    line = cart_line(page, first.id)
    expect(line.locator(".cart__remove")).to_have_text("×")
    expect(line.locator(".cart__brand")).to_have_text("Snks 23")
    expect(line.locator("strong.cart__name")).to_have_text("Hop Man 3")
    expect(line.locator(".cart__size")).to_have_text(f"Size {first.size}")
    expect(line.locator(".cart__price")).to_have_text("$120")
    expect(page.locator(".cart__checkout")).to_have_text("CHECKOUT")
    # The server refuses a third pair of the product, and the page says why.
    third = next(i for i in fresh_shop.complete_products()[0].items if i.available_count > 0 and i.id not in (first.id, second.id))
    page.click(f'.size-container__entry[value="{third.id}"]')
    expect(page.locator("[data-cart-message]")).to_contain_text("at most 2 pairs")
    expect(page.locator(".cart__title")).to_have_text("Cart 2")
    assert fresh_shop.cart(shopper_of(page)).item_ids == (second.id, first.id)
    assert_not_reloaded(page)
    assert page.console_messages == []


def test_a_second_tab_on_another_node_shows_the_same_cart_and_a_removal_in_either(
    page, store_url, fresh_shop, ray_settings, ray_cluster
):
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    open_shop(page, store_url)
    add_to_cart(page, first.id, 1)
    add_to_cart(page, second.id, 2)
    # The same shopper (the cookie is the browser's) in a tab served by node A's proxy and replicas.
    other = page.context.new_page()
    open_shop(other, f"http://127.0.0.1:{ray_cluster.proxy_ports['node_a']}")
    assert shopper_of(other) == shopper_of(page)
    expect(other.locator(".cart__title")).to_have_text("Cart 2")
    other.click(f'.cart__item[data-item-id="{first.id}"] .cart__remove')
    expect(other.locator(".cart__title")).to_have_text("Cart 1")
    expect(page.locator(".cart__title")).to_have_text("Cart 1")
    expect(cart_line(page, first.id)).to_have_count(0)
    page.click(f'.cart__item[data-item-id="{second.id}"] .cart__remove')
    expect(other.locator(".cart__title")).to_have_text("Cart 0")
    assert_not_reloaded(page)


def test_a_size_in_the_cart_that_sells_out_is_struck_through_in_both_tabs(
    page, store_url, fresh_shop, ray_settings, ray_cluster, tmp_path
):
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    shop.set_available(fresh_shop, first.id, 2)
    open_shop(page, store_url)
    add_to_cart(page, first.id, 1)
    add_to_cart(page, second.id, 2)
    other = page.context.new_page()
    open_shop(other, store_url)
    expect(other.locator(".cart__title")).to_have_text("Cart 2")
    sell_from_the_cli(ray_cluster, ray_settings, tmp_path, first.id, 2)
    for tab in (page, other):
        expect(cart_line(tab, first.id)).to_have_class(re.compile(r"cart__item--out"), timeout=10_000)
        expect(tab.locator(".cart__title")).to_have_text("Cart 2")  # struck through, not removed
        expect(tab.locator("[data-cart-subtotal]")).to_have_text("$120")
        assert "line-through" in cart_line(tab, first.id).locator(".cart__name").evaluate(
            "e => getComputedStyle(e).textDecorationLine")
    assert_not_reloaded(page)


def test_checkout_buys_the_cart_clears_it_in_every_tab_and_the_orders_page_lists_the_pairs(
    page, store_url, fresh_shop, ray_settings
):
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    open_shop(page, store_url)
    add_to_cart(page, first.id, 1)
    add_to_cart(page, second.id, 2)
    other = page.context.new_page()
    open_shop(other, store_url)
    shopper_id = shopper_of(page)
    page.click(".cart__checkout")
    expect(page.locator(".checkout__item")).to_have_count(2)
    expect(page.locator("[data-purchase]")).to_have_text("PURCHASE")
    page.click("[data-purchase]")
    expect(page.locator("h2")).to_have_text("Order Complete!")
    expect(page.locator("[data-order-pairs] .checkout__item")).to_have_count(2)
    expect(page.locator("[data-order-pairs]")).to_contain_text(f"Size {first.size}")
    expect(other.locator(".cart__title")).to_have_text("Cart 0")  # cleared in the other tab, live
    assert shop.order_count(fresh_shop, first.id, shopper_id) == 1
    assert shop.order_count(fresh_shop, second.id, shopper_id) == 1
    page.goto(f"{store_url}/orders")
    expect(page.locator(".order")).to_have_count(1)
    expect(page.locator(".order .checkout__item")).to_have_count(2)
    expect(page.locator(".order")).to_contain_text("Hop Man 3")
    page.goto(f"{store_url}/checkout")
    expect(page.locator("[data-checkout-message]")).to_have_text("Your cart is empty")
    assert shop.order_count(fresh_shop, shopper_id=shopper_id) == 2


def test_two_shoppers_checking_out_the_last_pair_at_once_one_gets_it(browser, store_url, fresh_shop, ray_settings):
    (last,) = released_sizes(fresh_shop, ray_settings, 1)
    shop.set_available(fresh_shop, last.id, 1)
    shoppers = [browser.new_context() for _ in range(2)]
    try:
        pages = [context.new_page() for context in shoppers]
        for tab in pages:
            open_shop(tab, store_url)
            add_to_cart(tab, last.id, 1)
            # (the checkout asks for the cart the page shows: a node whose copy is a moment behind
            # waits for it rather than saying the cart is empty, live.py cart_seen)
            expect(tab.locator(".cart__checkout")).to_have_attribute("href", re.compile(r"^/checkout\?cart=[1-9]\d*$"))
            tab.click(".cart__checkout")
            expect(tab.locator("[data-purchase]")).to_have_text("PURCHASE")
        # Both forms go at once (no waiting for the first page to load).
        for tab in pages:
            tab.evaluate("() => document.querySelector('[data-purchase]').form.submit()")
        for tab in pages:
            tab.wait_for_load_state()
            expect(tab.locator("h2.checkout__complete, [data-checkout-message]")).to_have_count(1, timeout=15_000)
        won = [tab for tab in pages if tab.locator("h2.checkout__complete").count() == 1]
        assert len(won) == 1
        lost = next(tab for tab in pages if tab is not won[0])
        assert lost.locator("[data-checkout-message]").inner_text() in (
            "Your purchase could not be completed (item %d is sold out)" % last.id,
            "Your cart has out-of-stock shoes")
        assert shop.order_count(fresh_shop, last.id) == 1
    finally:
        for context in shoppers:
            context.close()


def test_a_reload_and_a_reconnect_keep_the_cart(page, store_url, fresh_shop, ray_settings):
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    open_shop(page, store_url)
    add_to_cart(page, first.id, 1)
    page.reload()
    page.wait_for_function(CART_JOINED)
    expect(page.locator(".cart__title")).to_have_text("Cart 1")
    expect(cart_line(page, first.id)).to_have_count(1)
    page.evaluate("() => { window.notReloaded = true }")
    # Every socket dropped (and refused for 2 s); the cart changes meanwhile, from another tab.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(lambda: serve.get_app_handle("channels").broadcast("drop_sockets", 2.0).results()).result()
    page.wait_for_function("() => !window.sneakers23.socket.isConnected()")
    Inventory(ray_settings, replication=RayReplication()).add_to_cart(shopper_of(page), second.id)
    expect(page.locator(".cart__title")).to_have_text("Cart 2", timeout=20_000)
    expect(cart_line(page, first.id)).to_have_count(1)
    assert_not_reloaded(page)


# --- the admin dashboard ---


def test_the_admin_sees_shoppers_come_fill_carts_and_leave_and_releases_from_the_dashboard(
        browser, store_url, fresh_shop, ray_settings):
    from tests.support.store_fixtures import ADMIN_PASSWORD

    admin_context = browser.new_context()
    admin = admin_context.new_page()
    errors = []
    admin.on("pageerror", lambda error: errors.append(error))
    shopper_context = browser.new_context()
    try:
        # The admin logs in.
        admin.goto(f"{store_url}/admin")
        expect(admin.locator("h2")).to_have_text("Log in to the dashboard")
        admin.fill("input[name=who]", "Ada")
        admin.fill("input[name=password]", ADMIN_PASSWORD)
        admin.click("button[type=submit]")
        expect(admin.locator("[data-connection]")).to_have_text("live")
        online = admin.locator("[data-shoppers-online]")
        expect(online).to_have_text(re.compile(r"^\d+$"))
        before = int(online.text_content())  # (the earlier tests closed theirs: 0, unless one leaked)

        # A shopper opens the store in another browser: the count rises.
        shopper = shopper_context.new_page()
        open_shop(shopper, store_url)
        expect(online).to_have_text(str(before + 1))
        expect(admin.locator("[data-pages]")).to_contain_text("/")

        # The admin releases product 1 from the dashboard: the shopper's page shows its sizes.
        admin.click('[data-action="release"][data-product-id="1"]')
        expect(admin.locator("[data-action-message]")).to_have_text("released")
        expect(admin.locator("[data-audit] tr").first).to_contain_text("Ada")
        expect(admin.locator('[data-release-status="1"]')).to_have_text("released")
        size = next(i for i in fresh_shop.complete_products()[0].items if i.available_count > 0)
        expect(shopper.locator(f'.size-container__entry[value="{size.id}"]')).to_be_enabled()
        assert_not_reloaded(shopper)
        expect(admin.locator('[data-drop-mode-of="1"]')).to_be_disabled()  # (its mode is fixed once it is out)

        # The admin makes product 2 a queue drop: one place per account, so signed-in shoppers only.
        admin.select_option('[data-drop-mode-of="2"]', "queue")
        admin.click('[data-action="set_drop_mode"][data-product-id="2"]')
        expect(admin.locator("[data-action-message]")).to_contain_text("sold to signed-in shoppers only")
        expect(admin.locator('[data-drop-mode-status="2"]')).to_have_text(
            "a queue: a waiting room shuffled at the release, then admitted at a pace")
        expect(admin.locator('[data-sign-in-status="2"]')).to_have_text("sold only to signed-in shoppers")
        expect(admin.locator("[data-audit] tr").first).to_contain_text("set_drop_mode")

        # The shopper puts it in the cart: "1 in cart"; a restock from the dashboard moves M.
        in_cart, available = admin.locator(f'[data-in-cart="{size.id}"]'), admin.locator(f'[data-available="{size.id}"]')
        expect(available).to_have_text(str(size.available_count))
        add_to_cart(shopper, size.id, 1)
        expect(in_cart).to_have_text("1")
        admin.fill(f'[data-restock-count="{size.id}"]', "5")
        admin.click(f'[data-action="restock"][data-item-id="{size.id}"]')
        expect(available).to_have_text(str(size.available_count + 5))

        # The shopper goes to the checkout: the tab follows, with its page.
        shopper.click(".cart__checkout")
        expect(admin.locator("[data-pages]")).to_contain_text("/checkout")
        expect(online).to_have_text(str(before + 1))
        expect(in_cart).to_have_text("1")

        # The shopper closes the tab: both fall.
        shopper.close()
        expect(online).to_have_text(str(before))
        expect(in_cart).to_have_text("0")
        assert errors == []
    finally:
        shopper_context.close()
        admin_context.close()
