"""The channel hub behind a plain Starlette app: protocol, the original's push rules, bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sneakers23.domain.catalog import Catalog, Item, Product
from sneakers23.domain.changes import Cart
from sneakers23.domain.levels import Level
from sneakers23.domain.shopper_events import CartUpdated, ProductWentOnSale, StockChanged
from sneakers23.serve import channels, phoenix
from sneakers23.serve.channels import ChannelHub
from tests.support import aio
from harness.waiting import until


def make_catalog(released=False):
    items = tuple(Item(id=n, sku=f"SHU60{n:02d}", size=str(5 + n), product_id=1, available_count=n * 100, version=1)
                  for n in range(1, 4))
    return Catalog([Product(id=1, sku="SHU6000", order=0, brand="Snks 23", name="Hop Man 3", color="yellow/blue",
                            price_usd=120, main_image_url="", released=released, version=1, items=items)])


@pytest.fixture
def hub():
    return ChannelHub(make_catalog())


@pytest.fixture
def client(hub):
    app = Starlette(routes=[WebSocketRoute("/product_socket/websocket", hub.serve)])
    with TestClient(app) as client:
        yield client


def publish(client, hub, events):
    """As the live catalog does: on the event loop that serves the sockets."""
    client.portal.call(hub.publish, events)


def frame(*parts):
    return json.dumps(list(parts))


def socket(client):
    return client.websocket_connect("/product_socket/websocket?vsn=2.0.0")


def join(ws, topic="product:1", ref="1"):
    ws.send_text(frame(ref, ref, topic, "phx_join", {}))
    return json.loads(ws.receive_text())


def test_join_replies_with_the_products_current_state(client):
    with socket(client) as ws:
        reply = join(ws)
        assert reply[:4] == ["1", "1", "product:1", "phx_reply"]
        assert reply[4]["status"] == "ok"
        state = reply[4]["response"]
        assert state["released"] is False and "product-soon-1" in state["size_html"]
        assert state["items"] == [{"id": 1, "level": "low"}, {"id": 2, "level": "medium"}, {"id": 3, "level": "medium"}]


def test_unknown_products_and_topics_get_error_replies(client):
    with socket(client) as ws:
        assert join(ws, "product:999")[4] == {"status": "error", "response": {"reason": "unknown product"}}
        assert join(ws, "nonsense:1", "2")[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
        assert join(ws, "product:abc", "3")[4]["status"] == "error"
        assert join(ws, "product:1", "4")[4]["status"] == "ok"  # the socket still works


def test_heartbeat_and_leave_are_answered(client):
    with socket(client) as ws:
        ws.send_text(frame(None, "7", "phoenix", "heartbeat", {}))
        assert json.loads(ws.receive_text()) == [None, "7", "phoenix", "phx_reply", {"status": "ok", "response": {}}]
        join(ws)
        ws.send_text(frame("1", "8", "product:1", "phx_leave", {}))
        assert json.loads(ws.receive_text())[3:] == ["phx_reply", {"status": "ok", "response": {}}]
        assert json.loads(ws.receive_text())[3] == "phx_close"


def test_a_stock_change_is_pushed_to_the_product_topic(client, hub):
    with socket(client) as ws:
        join(ws)
        publish(client, hub, [StockChanged(1, 1, Level.LOW)])
        pushed = json.loads(ws.receive_text())
        assert pushed == [None, None, "product:1", "stock_change", {"product_id": 1, "item_id": 1, "level": "low"}]


def test_a_release_pushes_the_size_html(client, hub):
    with socket(client) as ws:
        join(ws)
        hub._products = make_catalog(released=True)
        publish(client, hub, [ProductWentOnSale(1)])
        topic, event, payload = json.loads(ws.receive_text())[2:]
        assert (topic, event) == ("product:1", "released")
        assert payload["size_html"].count("size-container__entry ") == 3
        for item_id in (1, 2, 3):
            assert f'value="{item_id}"' in payload["size_html"]


def test_pushes_reach_only_the_sockets_that_joined(client, hub):
    with socket(client) as joined, socket(client) as other:
        join(joined)
        other.send_text(frame(None, "1", "phoenix", "heartbeat", {}))
        other.receive_text()
        publish(client, hub, [StockChanged(1, 3, "out")])
        assert json.loads(joined.receive_text())[3] == "stock_change"
        other.send_text(frame(None, "2", "phoenix", "heartbeat", {}))
        assert json.loads(other.receive_text())[1] == "2"  # the next frame is its reply, not a push


def test_a_binary_frame_closes_its_socket(client):
    with socket(client) as ws:
        ws.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == phoenix.CLOSE_INVALID


@pytest.mark.parametrize(
    ("text", "code"),
    [("not json", phoenix.CLOSE_INVALID), ('{"a": 1}', phoenix.CLOSE_INVALID), ('["1", "1", "t"]', phoenix.CLOSE_INVALID),
     ("[" + " " * (1024 * 1024) + "]", phoenix.CLOSE_TOO_BIG)],
)
def test_frames_that_cannot_be_answered_close_only_their_socket(client, hub, text, code):
    with socket(client) as bystander:
        join(bystander)
        with socket(client) as ws:
            ws.send_text(text)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == code
        publish(client, hub, [StockChanged(1, 1, "out")])
        assert json.loads(bystander.receive_text())[3] == "stock_change"


def test_unknown_events_and_unjoined_topics_get_error_replies(client):
    with socket(client) as ws:
        ws.send_text(frame("1", "1", "product:1", "buy_everything", {}))
        assert json.loads(ws.receive_text())[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
        join(ws, ref="2")
        ws.send_text(frame("2", "3", "product:1", "buy_everything", {}))
        assert json.loads(ws.receive_text())[4]["response"]["reason"].startswith("unknown event")


def test_a_flood_of_joins_is_refused_then_cut_off(client, hub):
    with socket(client) as bystander:
        join(bystander)
        with socket(client) as ws:
            for n in range(channels.MAX_CHANNELS_PER_SOCKET + 5):
                ws.send_text(frame(str(n), str(n), f"product:{1 if n == 0 else n + 1000}", "phx_join", {}))
            replies = [json.loads(ws.receive_text()) for _ in range(channels.MAX_CHANNELS_PER_SOCKET + 5)]
            assert all(r[4]["status"] == "error" for r in replies[1:])
            with pytest.raises(WebSocketDisconnect) as closed:
                for n in range(channels.MESSAGE_BURST * 2):
                    ws.send_text(frame(str(n), str(n), "product:1", "phx_join", {}))
                    ws.receive_text()
            assert closed.value.code == phoenix.CLOSE_POLICY
        publish(client, hub, [StockChanged(1, 1, "out")])
        assert json.loads(bystander.receive_text())[3] == "stock_change"


@pytest.mark.parametrize("text", [frame("1" * 33, "1", "product:1", "phx_join", {}),  # what a reply would echo
                                  frame("1", "1", "p" * 129, "phx_join", {}),  # (refs, topic, event) is short
                                  frame("1", "1", "product:1", "e" * 65, {}),
                                  '["1", "1", "product:1", "phx_join", ' + "[" * 5000 + "]" * 5000 + "]"])
def test_a_frame_whose_echo_would_cost_more_than_it_is_worth_closes_its_socket(client, text):
    with socket(client) as ws:
        ws.send_text(text)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == phoenix.CLOSE_INVALID


def test_a_join_of_a_topic_already_joined_is_answered_and_changes_nothing(hub):
    seen = []

    class Kind:
        owns = staticmethod(lambda topic: topic.startswith("cart:"))

        def join(self, connection, message):
            seen.append("join")
            connection.send(phoenix.reply(message, "ok", {"n": len(seen)}))
            return True

        def rejoin(self, connection, message):
            seen.append("rejoin")
            connection.send(phoenix.reply(message, "ok", {"again": True}))

        def leave(self, connection, topic):
            seen.append("leave")

        def handle(self, connection, message):
            pass

        def publish(self, events):
            pass

    hub = ChannelHub(make_catalog(), [Kind()])
    app = Starlette(routes=[WebSocketRoute("/product_socket/websocket", hub.serve)])
    with TestClient(app) as client, socket(client) as ws:
        for ref in ("1", "2", "3"):
            assert join(ws, "cart:x", ref=ref)[4]["status"] == "ok"
            assert join(ws, "product:1", ref=ref)[4]["status"] == "ok"
        assert seen == ["join", "rejoin", "rejoin"]
    assert seen[-1] == "leave" and seen.count("leave") == 1


def test_another_protocol_version_is_refused(client):
    with client.websocket_connect("/product_socket/websocket?vsn=1.0.0") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == phoenix.CLOSE_INVALID


class FakeSocket:
    """Just enough of a Starlette WebSocket to drive the hub on one event loop, with a client
    that can stop reading (a stalled tab) or stop talking (a dead one)."""

    def __init__(self, reads: bool = True):
        self.query_params = {"vsn": phoenix.VERSION}
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.sent: list[list] = []
        self.closed: tuple[int, str] | None = None
        self.reads = reads
        self._stalled = asyncio.Event()  # never set: a client that stopped reading

    async def accept(self):
        pass

    async def receive(self):
        return await self.incoming.get()

    async def send_text(self, text: str):
        if not self.reads:
            await self._stalled.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = ""):
        self.closed = (code, reason)
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})
        if not self.reads:  # the close frame waits behind everything the client never read
            await self._stalled.wait()

    def resume(self):
        """The client reads again: everything held back goes out."""
        self.reads = True
        self._stalled.set()

    def say(self, *parts):
        self.incoming.put_nowait({"type": "websocket.receive", "text": frame(*parts)})


def test_a_socket_silent_past_the_heartbeat_period_is_let_go(monkeypatch):
    monkeypatch.setattr(channels, "IDLE_TIMEOUT_S", 0.1)

    async def scenario():
        hub = ChannelHub(make_catalog())
        silent = FakeSocket()
        silent.say("1", "1", "product:1", "phx_join", {})
        served = asyncio.get_running_loop().create_task(hub.serve(silent))
        await until(lambda: silent.sent)
        assert silent.sent[0][4]["status"] == "ok" and hub.sockets == 1
        await asyncio.wait_for(served, 2)  # it stops waiting for a client that says nothing
        assert hub.sockets == 0
        hub.publish([StockChanged(product_id=1, item_id=1, level=Level.OUT)])  # no one left to push to
        await asyncio.sleep(0)  # (a push is queued at once, to the sockets the hub holds: none)
        assert len(silent.sent) == 1

    aio.run(scenario())


def test_a_frame_owed_to_a_slow_socket_is_counted_in_the_bytes_it_takes_on_the_wire():
    # (frames are written with non-ASCII characters as themselves: a name in a cart, a topic)
    frame = phoenix.push("cart:x", "cart", {"name": "Élan 👟"})
    assert channels.utf8_size(frame) == len(frame.encode()) == len(frame) + 1 + 3
    assert channels.utf8_size('[null,null,"queue:2","place",{}]') == 32


@pytest.mark.parametrize("cap", [("OUTBOX_LIMIT", 20), ("OUTBOX_BYTES", 1200)])  # frames, or bytes
def test_a_socket_too_slow_to_keep_up_is_closed_and_the_others_get_every_push(monkeypatch, cap):
    monkeypatch.setattr(channels, *cap)
    monkeypatch.setattr(channels, "CLOSE_WAIT_S", 0.2)  # its close frame cannot get through either

    async def scenario():
        hub = ChannelHub(make_catalog(released=True))
        stalled, reading = FakeSocket(reads=False), FakeSocket()
        tasks = [asyncio.get_running_loop().create_task(hub.serve(ws)) for ws in (stalled, reading)]
        for ws in (stalled, reading):
            ws.say("1", "1", "product:1", "phx_join", {})
        await until(lambda: reading.sent and hub.sockets == 2)
        levels = [Level.LOW, Level.MEDIUM] * 20  # 40 pushes: twice what a stalled socket may owe
        for level in levels:
            hub.publish([StockChanged(product_id=1, item_id=1, level=level)])
            await asyncio.sleep(0)
        await until(lambda: stalled.closed is not None)
        assert stalled.closed == (phoenix.CLOSE_POLICY, "too slow to keep up")
        await until(lambda: len(reading.sent) == 1 + len(levels))
        assert [m[4]["level"] for m in reading.sent[1:]] == [str(level) for level in levels]
        await asyncio.wait_for(tasks[0], 2)  # the stalled one is gone; the reader is still served
        assert hub.sockets == 1 and not tasks[1].done()
        reading.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(tasks[1], 2)

    aio.run(scenario())


def test_a_socket_that_stalls_for_a_while_gets_every_frame_in_order_afterwards():
    async def scenario():
        hub = ChannelHub(make_catalog(released=True))
        ws = FakeSocket()
        served = asyncio.get_running_loop().create_task(hub.serve(ws))
        ws.say("1", "1", "product:1", "phx_join", {})
        await until(lambda: ws.sent)
        ws.reads = False  # the tab is busy: sends wait
        levels = [Level.LOW, Level.OUT, Level.MEDIUM, Level.HIGH, Level.LOW]
        for level in levels:
            hub.publish([StockChanged(product_id=1, item_id=2, level=level)])
        connection = next(iter(hub._connections))
        assert connection.sending is not None and len(connection.backlog) == len(levels) - 1
        ws.resume()
        await until(lambda: len(ws.sent) == 1 + len(levels))
        assert [m[4]["level"] for m in ws.sent[1:]] == [str(level) for level in levels]
        await until(lambda: connection.sending is None)
        hub.publish([StockChanged(product_id=1, item_id=2, level=Level.OUT)])  # straight out again
        assert ws.sent[-1][4]["level"] == "out" and connection.sending is None
        ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(served, 2)

    aio.run(scenario())


def test_a_cart_event_in_a_batch_never_stops_the_stock_pushes_after_it():
    # (A reseed, healed in one batch, brings carts emptied and stock changed together.)
    async def scenario():
        hub = ChannelHub(make_catalog(released=True))
        tab = FakeSocket()
        served = asyncio.get_running_loop().create_task(hub.serve(tab))
        tab.say("1", "1", "product:1", "phx_join", {})
        await until(lambda: tab.sent)
        hub.publish([CartUpdated("a" * 64, Cart("a" * 64, 2, ())), StockChanged(product_id=1, item_id=1, level=Level.OUT)])
        await until(lambda: len(tab.sent) == 2)
        assert tab.sent[1][3:] == ["stock_change", {"product_id": 1, "item_id": 1, "level": "out"}]
        await tab.close()
        await asyncio.wait_for(served, 2)

    aio.run(scenario())


def test_a_push_to_many_sockets_gives_the_loop_back_between_parts_and_keeps_every_order():
    """A push to more sockets than one turn of the loop may send goes out in parts, with the
    loop's other work between them; each socket gets every push in order; a socket that left
    meanwhile gets nothing more, and one that joined meanwhile only what came after its join."""
    count = channels.FANOUT_SENDS_PER_TURN * 2 + 10

    async def scenario():
        hub = ChannelHub(make_catalog(released=True))
        tabs = [FakeSocket() for _ in range(count)]
        served = [asyncio.get_running_loop().create_task(hub.serve(tab)) for tab in tabs]
        for tab in tabs:
            tab.say("1", "1", "product:1", "phx_join", {})
        await until(lambda: all(tab.sent for tab in tabs))
        hub.publish([StockChanged(product_id=1, item_id=2, level=Level.LOW)])
        hub.publish([StockChanged(product_id=1, item_id=2, level=Level.OUT)])
        told = sum(len(tab.sent) > 1 for tab in tabs)
        assert told == channels.FANOUT_SENDS_PER_TURN  # one turn's part, at once; the rest later
        # Before the rest goes out, a tab not told yet leaves, and another leaves and joins again.
        leaver, rejoiner = [tab for tab in tabs if len(tab.sent) == 1][:2]
        connection_of = {connection.websocket: connection for connection in hub._connections}
        hub._handle(connection_of[leaver], phoenix.decode(frame(None, "2", "product:1", "phx_leave", {})))
        hub._handle(connection_of[rejoiner], phoenix.decode(frame(None, "3", "product:1", "phx_leave", {})))
        hub._handle(connection_of[rejoiner], phoenix.decode(frame("4", "4", "product:1", "phx_join", {})))
        await until(lambda: not hub.pushing)
        for tab in tabs:
            if tab not in (leaver, rejoiner):
                assert [m[4]["level"] for m in tab.sent[1:]] == ["low", "out"]
        assert "stock_change" not in [m[3] for m in leaver.sent]  # it left before its part went out
        assert "stock_change" not in [m[3] for m in rejoiner.sent]  # … and this one's join said it all
        assert rejoiner.sent[-1][4]["status"] == "ok"  # (the state as its catalog holds it then)
        hub.publish([StockChanged(product_id=1, item_id=2, level=Level.MEDIUM)])
        assert hub.pushing
        before = sum(len(tab.sent) for tab in tabs)
        for _turn in range(10):  # turns of the loop, until the next part goes out: one part, no more
            await asyncio.sleep(0)
            if sum(len(tab.sent) for tab in tabs) > before:
                break
        assert sum(len(tab.sent) for tab in tabs) - before == channels.FANOUT_SENDS_PER_TURN
        # A socket that closes before its part goes out gets nothing more.
        closing = next(tab for tab in tabs if tab.sent[-1][4].get("level") != "medium" and tab not in (leaver, rejoiner))
        hub._gone(connection_of[closing])  # (as its serve() does when it closes)
        sent_before = len(closing.sent)
        await until(lambda: not hub.pushing)
        assert len(closing.sent) == sent_before
        assert sum(tab.sent[-1][4].get("level") == "medium" for tab in tabs) == count - 2  # (the leaver, the closed)
        assert rejoiner.sent[-1][3:] == ["stock_change", {"product_id": 1, "item_id": 2, "level": "medium"}]
        for tab in tabs:
            tab.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(asyncio.gather(*served), 5)

    aio.run(scenario())


def test_a_draws_end_reaches_every_page_of_the_product_with_how_long_to_spread_its_reads():
    """A draw's end (a change with no row, like an account's) goes through the node's live copy to
    the product's sockets, with how long their pages spread their reads of the outcome over: each
    page reads its own once, not every few seconds until the end."""
    from sneakers23.actors.node_cache import Snapshot
    from sneakers23.domain.changes import DrawFinished
    from sneakers23.domain.draws import outcome_reads_spread_s
    from sneakers23.live import LiveCatalog

    live = LiveCatalog()
    live._install(Snapshot("epoch-1", 0, make_catalog(released=True).products(), []))
    hub = ChannelHub(live)
    live.subscribe(hub.publish)
    app = Starlette(routes=[WebSocketRoute("/product_socket/websocket", hub.serve)])
    with TestClient(app) as client, socket(client) as page, socket(client) as elsewhere:  # (elsewhere: no product)
        join(page)
        client.portal.call(live._apply, [DrawFinished(1, 25_000)])
        assert json.loads(page.receive_text()) == [None, None, "product:1", "draw_finished",
                                                    {"spread_s": outcome_reads_spread_s(25_000)}]
        elsewhere.send_text(frame(None, "9", "phoenix", "heartbeat", {}))
        assert json.loads(elsewhere.receive_text())[1] == "9"  # (its next frame is its reply: nothing pushed)
