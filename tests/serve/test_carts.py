"""Cart channels on the session's store, with the official `phoenix` client: joins, adds and
removes, every refusal a clear error reply on a socket that stays up, and pushes to every tab."""

from __future__ import annotations

import time

from itsdangerous import TimestampSigner

from sneakers23.cluster import RayReplication
from sneakers23.inventory import Inventory
from sneakers23.serve.shoppers import CART_TOKEN_MAX_AGE_S, CartTokens, ShopperCookies
from tests.support import aio
from tests.support.store_fixtures import STORE_SECRET
from harness.waiting import wait_for


def new_shopper() -> tuple[str, str, str]:
    """A fresh shopper: its id, its cookie and the cart token its page would carry."""
    shopper_id, cookie = ShopperCookies(STORE_SECRET).new()
    return shopper_id, cookie, CartTokens(STORE_SECRET).issue(shopper_id)


def sizes_in_stock(inventory: Inventory, product_id: int, count: int) -> list[int]:
    product = next(p for p in inventory.complete_products() if p.id == product_id)
    return [item.id for item in product.items if item.available_count > 0][:count]


def joined(client, topic: str) -> dict:
    wait_for(lambda: client.of("join_ok", topic=topic) or client.of("join_error", topic=topic), what=f"{topic} joined")
    return (client.of("join_ok", topic=topic) or client.of("join_error", topic=topic))[0]


def cart_items(view: dict) -> list[int]:
    return [item["item_id"] for item in view["items"]]


def added_once_on_sale(tab, topic: str, item_id: int) -> dict:
    """The add's reply once the release just made has reached the tab's replica: until then it is
    refused as not on sale yet (memory may refuse; the release is carried to every node's cache, and
    from there to its replicas, a moment after the database has it)."""
    def reply() -> dict | None:
        got = tab.reply(tab.push(topic, "add_item", {"item_id": item_id}))
        return None if got["status"] == "error" and got["response"]["reason"] == "not_released" else got

    return wait_for(reply, what=f"the release of size {item_id} to reach the tab's replica")


def test_joining_returns_the_cart_and_add_and_remove_reply_with_it(cart_client, fresh_shop, ray_settings):
    Inventory(ray_settings, replication=RayReplication()).release(1)
    first, second = sizes_in_stock(fresh_shop, 1, 2)
    shopper_id, _cookie, token = new_shopper()
    topic = f"cart:{shopper_id}"
    tab = cart_client()
    tab.join(topic, token=token, page="/")
    join = joined(tab, topic)
    assert join["type"] == "join_ok"
    assert join["response"] == {"version": 0, "items": [], "count": 0, "subtotal_usd": 0}

    added = added_once_on_sale(tab, topic, first)
    assert added["status"] == "ok" and cart_items(added["response"]) == [first]
    line = added["response"]["items"][0]
    assert (line["brand"], line["name"], line["price_usd"], line["released"], line["out_of_stock"]) == (
        "Snks 23", "Hop Man 3", 120, True, False)
    both = tab.reply(tab.push(topic, "add_item", {"item_id": str(second)}))  # a button's value is a string
    assert cart_items(both["response"]) == sorted([first, second]) and both["response"]["subtotal_usd"] == 240
    removed = tab.reply(tab.push(topic, "remove_item", {"item_id": first}))
    assert removed["status"] == "ok" and cart_items(removed["response"]) == [second]
    assert fresh_shop.cart(shopper_id).item_ids == (second,)  # the database holds it

    # The tab's own changes come back as pushes too; it ends on the newest version.
    wait_for(lambda: tab.of("cart") and tab.of("cart")[-1]["payload"]["version"] == 3, what="the last push")
    assert cart_items(tab.of("cart")[-1]["payload"]) == [second]


def test_every_refused_change_gets_a_clear_error_and_the_socket_stays_up(cart_client, fresh_shop, ray_settings):
    Inventory(ray_settings, replication=RayReplication()).release(1)
    sizes = sizes_in_stock(fresh_shop, 1, 3)
    unreleased = sizes_in_stock(fresh_shop, 2, 1)[0]
    shopper_id, _cookie, token = new_shopper()
    topic = f"cart:{shopper_id}"
    tab = cart_client()

    # A forged token, a token for another cart, and an expired one: the join is refused.
    other_id, _c, other_token = new_shopper()
    expired_signer = TimestampSigner(STORE_SECRET, salt="sneakers23-cart")
    expired_signer.get_timestamp = lambda: int(time.time()) - CART_TOKEN_MAX_AGE_S - 60
    for bad_topic, bad_token, reason in [
        (f"cart:{other_id}", other_token[:-2] + ("AA" if not other_token.endswith("AA") else "BB"), "invalid_token"),
        (f"cart:{other_id}x", other_token, "invalid_token"),  # another shopper's token
        (f"cart:{'e' * 64}", expired_signer.sign("e" * 64).decode(), "expired_token"),
    ]:
        tab.join(bad_topic, token=bad_token)
        refused = joined(tab, bad_topic)
        assert refused["type"] == "join_error" and refused["response"]["reason"] == reason, refused
        assert refused["response"]["message"]

    tab.join(topic, token=token)
    assert joined(tab, topic)["type"] == "join_ok"

    def refused(payload, event="add_item") -> dict:
        reply = tab.reply(tab.push(topic, event, payload))
        assert reply["status"] == "error", reply
        assert reply["response"]["message"]
        return reply["response"]

    assert refused({"item_id": 99999})["reason"] == "not_found"
    assert refused({"item_id": "seven"})["reason"] == "bad_request"
    assert refused({})["reason"] == "bad_request"
    assert refused({"item_id": unreleased})["reason"] == "not_released"
    assert refused({"item_id": sizes[0]}, event="empty_cart")["reason"] == "unknown_event"
    assert added_once_on_sale(tab, topic, sizes[0])["status"] == "ok"
    assert refused({"item_id": sizes[0]})["reason"] == "duplicate_item"
    assert tab.reply(tab.push(topic, "add_item", {"item_id": sizes[1]}))["status"] == "ok"
    third = refused({"item_id": sizes[2]})
    assert third["reason"] == "limit_reached" and "2 pairs" in third["message"]

    # Still the same socket: it never closed, and it still answers.
    assert tab.of("close") == []
    count = len(tab.of("heartbeat_reply"))
    wait_for(lambda: len(tab.of("heartbeat_reply")) > count, what="a heartbeat answered after the errors")
    assert tab.reply(tab.push(topic, "remove_item", {"item_id": sizes[0]}))["status"] == "ok"
    assert fresh_shop.cart(shopper_id).item_ids == (sizes[1],)
    # A removal of a size not in the cart is refused from memory; a socket holds one cart.
    version = fresh_shop.cart(shopper_id).version
    assert refused({"item_id": sizes[2]}, event="remove_item")["reason"] == "not_in_cart"
    assert fresh_shop.cart(shopper_id).version == version
    third_id, _cookie, third_token = new_shopper()
    tab.join(f"cart:{third_id}", token=third_token)
    assert joined(tab, f"cart:{third_id}")["response"]["reason"] == "one_cart"


def test_a_change_in_one_tab_is_pushed_to_the_others_and_a_sell_out_strikes_it_through(
    cart_client, fresh_shop, ray_settings, ray_cluster
):
    inventory = Inventory(ray_settings, replication=RayReplication())
    inventory.release(1)
    first, second = sizes_in_stock(fresh_shop, 1, 2)
    shopper_id, _cookie, token = new_shopper()
    topic = f"cart:{shopper_id}"
    # Two tabs, each through another node's proxy (so served by another node's channel replica).
    ports = list(ray_cluster.proxy_ports.values())
    tabs = [cart_client(f"http://127.0.0.1:{port}") for port in ports[:2]]
    for tab in tabs:
        tab.join(topic, token=token)
        assert joined(tab, topic)["type"] == "join_ok"
    assert added_once_on_sale(tabs[0], topic, first)["status"] == "ok"
    wait_for(lambda: any(cart_items(p["payload"]) == [first] for p in tabs[1].of("cart")), timeout=10,
             what="the other tab to show the add")
    assert added_once_on_sale(tabs[1], topic, second)["status"] == "ok"

    from harness import shop

    shop.set_available(fresh_shop, first, 1)
    sold = inventory.sell(first, 1)  # the last pair goes to someone else
    assert (sold.sold, sold.available_count) == (1, 0), sold.refused
    for number, tab in enumerate(tabs):
        try:
            wait_for(lambda tab=tab: any(
                [i["out_of_stock"] for i in p["payload"]["items"] if i["item_id"] == first] == [True]
                for p in tab.of("cart")), timeout=10, what=f"the sold-out size struck through in tab {number}")
        except AssertionError as timed_out:  # (what each tab was told, and what the pages hold, to say why)
            shown = [[(i["item_id"], i["out_of_stock"]) for i in p["payload"]["items"]] for p in tab.of("cart")]
            raise AssertionError(f"{timed_out}; its cart pushes {shown}; closes {tab.of('close')}; the database "
                                 f"holds {shop.available(fresh_shop, first)} at version "
                                 f"{shop.availability_version(fresh_shop, first)}") from None
    last = tabs[0].of("cart")[-1]["payload"]
    assert cart_items(last) == sorted([first, second])  # struck through, not removed


def test_a_sell_out_in_many_carts_is_pushed_a_part_a_turn_of_the_loop_and_every_tab_gets_it_once():
    """A size sold out in a drop is in hundreds of carts: their pushes go CART_PUSHES_PER_TURN a
    turn of the loop (the first part at once), so no one callback holds every socket of the
    replica, and every tab still gets its cart, once; one whose tabs all left meanwhile gets none
    (a tab that joins later is answered with its cart as it is then)."""
    import json

    from harness.waiting import until
    from sneakers23.domain.changes import Cart
    from sneakers23.domain.levels import Level
    from sneakers23.domain.shopper_events import StockChanged
    from sneakers23.serve.carts import CART_PUSHES_PER_TURN, CartChannels

    class Memory:
        def cart(self, shopper_id: str) -> Cart:
            return Cart(shopper_id, 3, (7,))

        def cart_lines(self, cart: Cart) -> list:
            return []

    class Tab:
        def __init__(self):
            self.frames: list[str] = []

        def send(self, frame: str) -> None:
            self.frames.append(frame)

    async def run() -> None:
        carts = CartChannels(Memory(), None, None, 2)
        tabs = {f"{n:064x}": Tab() for n in range(CART_PUSHES_PER_TURN * 3 + 5)}
        for shopper_id, tab in tabs.items():
            carts._topics[shopper_id] = {tab}  # (joined: as a join with its cart token leaves it)
        carts.publish([StockChanged(1, 7, Level.OUT)])
        assert sum(len(tab.frames) for tab in tabs.values()) == CART_PUSHES_PER_TURN  # (the rest, later turns)
        gone_id, gone = tabs.popitem()  # (the last: still to be pushed)
        carts.leave(gone, f"cart:{gone_id}")
        fresh = Tab()  # (its shopper's new tab, answered with the cart as it is now: no push of before)
        carts._topics[gone_id] = {fresh}
        await until(lambda: all(tab.frames for tab in tabs.values()), timeout=5, what="every tab's cart")
        assert all(len(tab.frames) == 1 and json.loads(tab.frames[0])[2:4] == [f"cart:{shopper_id}", "cart"]
                   for shopper_id, tab in tabs.items())
        assert gone.frames == fresh.frames == [] and not carts.pushing

    aio.run(run())  # (in a thread of its own: a Chromium test of this worker keeps a loop running here)
