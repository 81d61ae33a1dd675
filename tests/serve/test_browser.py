"""What shoppers see, in a real browser (the machine's Chromium, headless, driven by Playwright)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ray import serve

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from tests.support import shop

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
    scheduled = inventory.schedule_release(2, at)
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
