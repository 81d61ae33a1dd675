"""Every shopper can use it, in the machine's Chromium: axe-core finds nothing on any page, a
size's level is said in words and not by colour alone, live changes are announced (a burst at a
time), the keyboard reaches and works everything, and the shop reads at 320 px wide."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from harness import shop
from harness.waiting import wait_for
from sneakers23.cluster import RayReplication
from sneakers23.domain.levels import LEVEL_WORDS, Level
from sneakers23.inventory import Inventory
from tests.serve.test_browser import JOINED, add_to_cart, open_shop, released_sizes
from tests.support.store_fixtures import ADMIN_PASSWORD, JS

AXE = JS / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def bare_page(browser, phoenix_js):
    """A page whose context lets axe-core's script in past the store's Content-Security-Policy
    (`npm ci`, through phoenix_js, installed axe-core with the Phoenix client)."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.errors = errors
    yield page
    context.close()


def axe_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`)""")


def listen_to_announcements(page) -> None:
    """From now on, `window.said` lists every text the live region is given."""
    page.evaluate("""() => { window.said = [];
        new MutationObserver(() => window.said.push(document.querySelector("[data-announcer]").textContent))
            .observe(document.querySelector("[data-announcer]"), { childList: true, characterData: true, subtree: true }); }""")


def test_axe_core_finds_nothing_on_any_page(bare_page, store_url, fresh_shop, ray_settings):
    page = bare_page
    first, second = released_sizes(fresh_shop, ray_settings, 2)
    shop.set_available(fresh_shop, second.id, 0)  # a sold-out size, struck through, on the page
    wait_for_level(page, store_url, second.id, "out")
    seen = {}
    seen["catalog"] = axe_violations(page)
    add_to_cart(page, first.id, 1)
    seen["catalog with a cart"] = axe_violations(page)
    page.set_viewport_size({"width": 390, "height": 844})
    seen["catalog on a phone"] = axe_violations(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.click(".cart__checkout")
    expect(page.locator("[data-purchase]")).to_be_visible()
    seen["checkout"] = axe_violations(page)
    page.click("[data-purchase]")
    expect(page.locator("h2")).to_have_text("Order Complete!")
    seen["order complete"] = axe_violations(page)
    page.goto(f"{store_url}/orders")
    seen["your orders"] = axe_violations(page)
    for path, name in (("/account/login", "sign in"), ("/account/reset", "reset"), ("/account/signup", "sign up")):
        page.goto(f"{store_url}{path}")
        expect(page.locator("[data-work-status]") if path != "/account/reset" else page.locator("h2")).to_be_visible()
        seen[name] = axe_violations(page)
    page.get_by_label("Email address").fill(f"axe-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password").fill("a long and quiet passphrase")
    page.get_by_role("button", name="SIGN UP").click()  # (once the page's proof of work is done)
    expect(page.locator("[data-account-unverified]")).to_be_visible()
    seen["your account"] = axe_violations(page)
    page.goto(f"{store_url}/admin/login")
    seen["admin login"] = axe_violations(page)
    page.fill("input[name=who]", "Ada")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("[data-connection]")).to_have_text("live")
    seen["admin dashboard"] = axe_violations(page)
    assert {name: found for name, found in seen.items() if found} == {}
    assert page.errors == []


def wait_for_level(page, url, item_id: int, level: str) -> None:
    open_shop(page, url)
    page.wait_for_selector(f'.size-container__entry--level-{level}[value="{item_id}"]', timeout=15_000)


def test_a_sizes_level_is_said_in_words_and_a_change_is_announced_once_a_burst(bare_page, store_url, fresh_shop,
                                                                                 ray_settings):
    page = bare_page
    plenty, few, gone = released_sizes(fresh_shop, ray_settings, 3)
    shop.set_available(fresh_shop, plenty.id, 600)
    shop.set_available(fresh_shop, few.id, 3)
    shop.set_available(fresh_shop, gone.id, 2)
    wait_for_level(page, store_url, few.id, "low")
    page.wait_for_selector(f'.size-container__entry--level-low[value="{gone.id}"]', timeout=15_000)
    listen_to_announcements(page)
    size = lambda item: page.locator(f'.size-container__entry[value="{item.id}"]')  # noqa: E731
    expect(size(plenty)).to_have_attribute("aria-label", f"Size {plenty.size}, in stock")
    expect(size(few)).to_have_attribute("aria-label", f"Size {few.size}, few left")
    expect(size(few).locator(".size-container__mark")).to_have_text("few left")  # a mark that is not a colour
    legend = page.locator(".level-legend__entry")
    expect(legend).to_have_count(4)
    for level in Level:
        expect(page.locator(".level-legend")).to_contain_text(LEVEL_WORDS[level])

    # Two sizes sell out at once: both are said, politely, in as few announcements as the pushes
    # took seconds (a burst is said once).
    inventory = Inventory(ray_settings, replication=RayReplication())
    try:
        inventory.sell(few.id, 3)
        inventory.sell(gone.id, 2)
    finally:
        inventory.close()
    expect(size(gone)).to_have_attribute("aria-label", f"Size {gone.size}, sold out", timeout=15_000)
    expect(size(few)).to_be_disabled()
    expect(page.locator("[data-announcer]")).to_have_attribute("aria-live", "polite")
    both = f"""() => window.said.join(" ").includes("Hop Man 3 size {few.size}: sold out")
        && window.said.join(" ").includes("Hop Man 3 size {gone.size}: sold out")"""
    try:
        wait_for(lambda: page.evaluate(both), timeout=5, what="both sell-outs said")
    except AssertionError as error:
        raise AssertionError(f"{error}; said: {page.evaluate('() => window.said')}") from None
    said = page.evaluate("() => window.said")
    assert len(said) <= 2, said


def test_a_burst_of_changes_is_said_once_the_most_important_first(bare_page, store_url, fresh_shop, ray_settings):
    page = bare_page
    sizes = released_sizes(fresh_shop, ray_settings, 5)
    open_shop(page, store_url)
    listen_to_announcements(page)
    # Five pushes within a moment, as a drop sends them (the page's own channel delivers them).
    page.evaluate("""(ids) => { const channel = window.sneakers23.channels["1"];
        ids.forEach((id, n) => channel.trigger("stock_change", { product_id: 1, item_id: id, level: n === 4 ? "out" : "low" })); }""",
                  [size.id for size in sizes])
    page.wait_for_function("() => window.said.length > 0")
    assert page.evaluate("() => window.said") == [
        f"Hop Man 3 size {sizes[4].size}: sold out. Hop Man 3 size {sizes[0].size}: few left. and 3 more changes."]


def test_the_keyboard_reaches_and_works_every_action_with_a_visible_focus(bare_page, store_url, fresh_shop,
                                                                         ray_settings):
    page = bare_page
    (item,) = released_sizes(fresh_shop, ray_settings, 1)
    open_shop(page, store_url)
    reached = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.value || document.activeElement.className"))
        if str(item.id) in reached:
            break
    assert str(item.id) in reached, reached
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "a focus that shows"
    page.keyboard.press("Enter")
    expect(page.locator(".cart__title")).to_have_text("Cart 1")
    expect(page.locator("[data-announcer]")).to_have_text("Cart: 1 pair.", timeout=5_000)
    expect(page.locator(f'.size-container__entry[value="{item.id}"]')).to_have_attribute(
        "aria-label", re.compile(r", in cart$"))

    # A reconnect re-renders every size: the focused one keeps the focus.
    page.evaluate("() => { window.sneakers23.socket.disconnect(); window.sneakers23.socket.connect(); }")
    page.wait_for_function(JOINED)
    assert page.evaluate("() => document.activeElement.value") == str(item.id)

    remove = page.locator(f'[data-cart-remove="{item.id}"]')
    expect(remove).to_have_attribute("aria-label", f"Remove Hop Man 3 size {item.size}")
    remove.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".cart__title")).to_have_text("Cart 0")
    expect(page.locator(".cart__title")).to_be_focused()  # (its line gone, the focus went to the cart)
    page.locator(f'.size-container__entry[value="{item.id}"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator(".cart__title")).to_have_text("Cart 1")
    page.locator(".cart__checkout").focus()
    page.keyboard.press("Enter")
    expect(page.locator("[data-purchase]")).to_be_visible()
    page.locator("[data-purchase]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("h2")).to_have_text("Order Complete!")


def test_a_focused_size_that_sells_out_hands_the_focus_to_the_next_size_on_sale(bare_page, store_url, fresh_shop,
                                                                               ray_settings):
    page = bare_page
    going, next_one = released_sizes(fresh_shop, ray_settings, 2)
    shop.set_available(fresh_shop, going.id, 2)
    wait_for_level(page, store_url, going.id, "low")
    page.locator(f'.size-container__entry[value="{going.id}"]').focus()
    inventory = Inventory(ray_settings, replication=RayReplication())
    try:
        inventory.sell(going.id, 2)
    finally:
        inventory.close()
    expect(page.locator(f'.size-container__entry[value="{going.id}"]')).to_be_disabled(timeout=15_000)
    expect(page.locator(f'.size-container__entry[value="{next_one.id}"]')).to_be_focused()


def test_the_shop_reads_at_320_px_wide_and_at_200_percent_zoom(bare_page, store_url, fresh_shop, ray_settings):
    page = bare_page
    released_sizes(fresh_shop, ray_settings, 1)
    for width in (320, 640):  # (640 px: a 1280 px laptop at 200%)
        page.set_viewport_size({"width": width, "height": 800})
        open_shop(page, store_url)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, f"no sideways scrolling at {width} px"
        cart = page.locator("[data-cart]").bounding_box()
        assert cart["x"] >= 0 and cart["x"] + cart["width"] <= width


def test_the_dashboard_reads_at_a_glance(bare_page, store_url, fresh_shop, ray_settings):
    page = bare_page
    released_sizes(fresh_shop, ray_settings, 1)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{store_url}/admin/login")
    page.fill("input[name=who]", "Ada")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("[data-connection]")).to_have_text("live")
    page.locator('[data-action="release"][data-product-id="2"]').focus()  # the staff's actions, by keyboard too
    page.keyboard.press("Enter")
    expect(page.locator("[data-action-message]")).to_have_text("released")

    # The brand as the shop writes it, and figures whose nouns agree with them: one shopper is "1
    # shopper" (the other tests' tabs have left, or leave within a heartbeat).
    brand = page.locator(".admin__glance .admin__brand").first
    assert brand.evaluate("(element) => getComputedStyle(element).textTransform") == "uppercase"
    shopper = page.context.browser.new_context().new_page()
    try:
        open_shop(shopper, store_url)
        expect(page.locator("[data-shoppers-online]")).to_have_text("1", timeout=30_000)
        expect(page.locator('[data-unit-of="shoppers-online"]')).to_have_text("shopper")
    finally:
        shopper.context.close()
    # Each figure and its noun read in one go: the shopper who just left changes both meanwhile.
    for name in ("shoppers-online", "tabs-open", "sold-last-minute"):
        count, unit, one, many = page.evaluate(
            """(name) => {
                const figure = document.querySelector(`[data-${name}]`);
                const unit = document.querySelector(`[data-unit-of="${name}"]`);
                return [figure.textContent, unit.textContent, unit.dataset.one, unit.dataset.many];
            }""", name)
        assert unit.strip() == (one if int(count.replace(",", "")) == 1 else many), (name, count, unit)

    # Every product's live figures above the fold on a laptop.
    for row in page.locator("[data-glance]").all():
        box = row.bounding_box()
        assert box["y"] + box["height"] <= 768, "a product's figures below the fold"
    expect(page.locator('[data-glance-status="2"]')).to_have_text("released")

    # Audit times in the staff's time zone, readable, the full timestamp on hover.
    when = page.locator("[data-audit] time").first
    expect(when).to_have_attribute("title", re.compile(r"\d{4}"))
    assert not re.search(r"T\d\d:|\.\d{6}", when.text_content()), when.text_content()

    # The sales chart has a time axis and a count axis.
    chart = page.locator("[data-sales-chart]")
    expect(chart.locator("text", has_text="now")).to_have_count(1)
    expect(chart.locator("text", has_text="60 s ago")).to_have_count(1)
    expect(chart.locator("text", has_text=re.compile(r"^0$"))).to_have_count(1)
    assert page.errors == []
