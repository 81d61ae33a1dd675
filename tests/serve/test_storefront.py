"""The storefront on Ray Serve (serve/storefront.py): pages, the JSON API and purchases, end to end."""

from __future__ import annotations

import httpx
import pytest

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from harness import shop
from tests.support.shoppers import shopper_client
from harness.waiting import wait_for


def shopper(store_url) -> httpx.Client:
    """A shopper's HTTP client: it opens the store page first, which gives it its cookie."""
    return shopper_client(store_url)


def publishing(settings) -> Inventory:
    return Inventory(settings, replication=RayReplication())


def test_the_catalog_page(store_url, fresh_shop):
    response = httpx.get(f"{store_url}/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store, must-revalidate"
    assert "sneakers23_shopper" in response.headers["set-cookie"]
    html = response.text
    assert "<title>Sneakers23</title>" in html
    assert html.count('class="product-listing"') == 2
    assert 'data-product-id="1"' in html and 'data-product-id="2"' in html
    for text in ("Hop Man 3", "Snks 23", "yellow/blue", "$120", "Breezy Boost 600", "Asler", "momentum", "$140"):
        assert text in html
    assert 'class="product-soon-1"' in html and "coming soon..." in html
    assert "size-container__entry" not in html  # nothing released yet


def test_a_released_product_shows_its_sizes_with_levels(store_url, fresh_shop, ray_settings):
    publishing(ray_settings).release(1)
    products = fresh_shop.complete_products()
    shop.set_available(fresh_shop, 1, 0)  # a sold-out size, healed into the caches by anti-entropy
    wait_for(lambda: 'value="1" disabled' in httpx.get(f"{store_url}/").text, what="the page to show item 1 out")
    html = httpx.get(f"{store_url}/").text
    assert "product-soon-1" not in html and "product-soon-2" in html
    assert ('aria-label="Size 6, sold out" data-size="6" class="size-container__entry size-container__entry--level-out" '
            'value="1" disabled>6 <span class="size-container__mark" aria-hidden="true">sold out</span></button>') in html
    for item in products[0].items[1:]:
        disabled = " disabled" if item.available_count == 0 else ""
        assert f'size-container__entry--level-{item.level}" value="{item.id}"{disabled}>{item.size} <' in html


def test_static_files_and_the_json_api(store_url, fresh_shop):
    assert httpx.get(f"{store_url}/static/css/store.css").status_code == 200
    assert "phoenix" in httpx.get(f"{store_url}/static/js/store.js").text
    assert httpx.get(f"{store_url}/static/vendor/phoenix/phoenix.mjs").status_code == 200
    products = httpx.get(f"{store_url}/api/products").json()
    assert [p["sku"] for p in products] == ["SHU6000", "SHU6100"]
    assert set(products[0]["items"][0]) == {"id", "sku", "size", "level"}  # levels, never counts
    assert httpx.get(f"{store_url}/healthz").json()["status"] == "ok"


def test_purchases_and_their_refusals(store_url, fresh_shop, ray_settings):
    client = shopper(store_url)
    assert client.post("/api/items/14/purchase").status_code == 403  # product 2 is not released
    publishing(ray_settings).release(1)
    # (Until the page replica's memory has the release, it refuses from memory: a stale refusal.)
    wait_for(lambda: "product-soon-1" not in httpx.get(f"{store_url}/").text, what="the pages to show product 1 released")
    in_stock = [i for i in fresh_shop.complete_products()[0].items if i.available_count > 0]
    bought = client.post(f"/api/items/{in_stock[0].id}/purchase", headers={"Idempotency-Key": "k1"})
    assert bought.status_code == 200 and bought.json()["item_id"] == in_stock[0].id
    again = client.post(f"/api/items/{in_stock[0].id}/purchase", headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert client.post(f"/api/items/{in_stock[0].id}/purchase").json()["error"] == "limit_reached"

    shop.set_available(fresh_shop, in_stock[1].id, 0)
    sold_out = client.post(f"/api/items/{in_stock[1].id}/purchase")
    assert (sold_out.status_code, sold_out.json()["error"]) == (409, "sold_out")
    assert client.post(f"/api/items/{in_stock[2].id}/purchase").status_code == 200
    limit = client.post(f"/api/items/{in_stock[3].id}/purchase")
    assert (limit.status_code, limit.json()["error"]) == (409, "limit_reached")
    assert shop.order_count(fresh_shop) == 2


@pytest.mark.parametrize(
    ("path", "cookie", "status", "error"),
    [("/api/items/abc/purchase", True, 400, "bad_request"), ("/api/items/999/purchase", True, 404, "unknown_item"),
     ("/api/items/1/purchase", False, 401, "no_shopper")],
)
def test_bad_purchase_input_gets_a_clear_status(store_url, fresh_shop, path, cookie, status, error):
    client = shopper(store_url) if cookie else httpx.Client(base_url=store_url)
    if not cookie:
        client.cookies.set("sneakers23_shopper", "forged")
    response = client.post(path)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error and body["message"] and "Traceback" not in response.text
