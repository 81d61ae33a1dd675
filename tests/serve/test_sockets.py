"""The shoppers' sockets on Ray Serve (serve/sockets.py), end to end, with the official Phoenix
client."""

from __future__ import annotations

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from harness import shop
from harness.waiting import wait_for


def test_the_official_phoenix_client_joins_and_gets_pushes(store_url, fresh_shop, ray_settings, phoenix_client):
    client = phoenix_client("product:1", "product:999", "nonsense:1")
    joined = wait_for(lambda: client.of("join_ok", topic="product:1"), what="the join reply")[0]
    assert joined["response"]["released"] is False and "product-soon-1" in joined["response"]["size_html"]
    assert wait_for(lambda: client.of("join_error", topic="product:999"))[0]["response"]["reason"]
    assert wait_for(lambda: client.of("join_error", topic="nonsense:1"))[0]["response"]["reason"]
    wait_for(lambda: client.of("heartbeat_reply", status="ok"), what="a heartbeat reply")

    inventory = Inventory(ray_settings, replication=RayReplication())
    inventory.release(1)
    released = wait_for(lambda: client.of("released", topic="product:1"), what="the released push")
    html = released[0]["payload"]["size_html"]
    for item in fresh_shop.complete_products()[0].items:
        assert "size-container__entry" in html and f'value="{item.id}"' in html

    # Same level: no push. A change that leaves a size out: a push, every time.
    item = next(i for i in fresh_shop.complete_products()[0].items if i.available_count >= 300)
    shop.set_available(fresh_shop, item.id, 2)
    inventory.sell(item.id, 1)  # 2 -> 1: low -> low
    inventory.sell(item.id, 1)  # 1 -> 0: out
    out = wait_for(lambda: [r for r in client.of("stock_change") if r["payload"]["level"] == "out"], what="out")
    assert out[0]["payload"] == {"product_id": 1, "item_id": item.id, "level": "out"}
    changes = [r["payload"] for r in client.of("stock_change") if r["payload"]["item_id"] == item.id]
    assert [c["level"] for c in changes] == ["low", "out"]  # the low came from the resync of set_available
    assert not client.of("released", topic="product:999")
