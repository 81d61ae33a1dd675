"""The queue channels behind a plain Starlette app, in process: a tab takes its account's place at the
join (a guest is refused), is told its place as the line's summary moves, and its turn (read again
from the waiting room once the line's head passed it)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient

from sneakers23.domain.accounts import Account, account_shopper_id
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.shopper_events import LineMoved
from sneakers23.domain.waiting_room import LinePlace, Stage
from sneakers23.errors import QueueRefused
from sneakers23.serve.channels import ChannelHub
from sneakers23.serve.queue import QueueChannels
from sneakers23.serve.shoppers import SESSION_COOKIE, SessionCookies
from tests.serve.test_channels import make_catalog

SECRET = "a-secret-key-for-the-queue-channel-tests-only"
ADA = Account(7, "ada@example.com", verified=True, locked=False, created_at=datetime.now(timezone.utc))


class Live:
    def __init__(self):
        self.lines: dict[int, WaitingLine] = {}

    def line(self, product_id):
        return self.lines.get(product_id)


class Rooms:
    """The inventory's side: sessions, and the places of product 2's waiting room."""

    def __init__(self):
        self.places: dict[str, LinePlace] = {}
        self.reads = 0

    async def session_account_async(self, token):
        return ADA if token == "ada-session" else None

    async def join_queue_async(self, shopper_id, product_id):
        if product_id != 2:
            raise QueueRefused(f"product {product_id} is not sold through a queue")
        return self.places.setdefault(shopper_id, LinePlace(shopper_id, "e-ada", Stage.PRE_QUEUE))

    async def queue_places_async(self, product_id, shopper_ids):
        self.reads += 1
        return {s: self.places[s] for s in shopper_ids if s in self.places}


@pytest.fixture
def parts():
    live, rooms = Live(), Rooms()
    hub = ChannelHub(make_catalog(), [QueueChannels(live, rooms, SessionCookies(SECRET))])
    app = Starlette(routes=[WebSocketRoute("/product_socket/websocket", hub.serve)])
    with TestClient(app) as client:
        yield client, hub, live, rooms


def connect(client, session: str | None):
    cookies = {} if session is None else {"cookie": f"{SESSION_COOKIE}={SessionCookies(SECRET).cookie(session)}"}
    return client.websocket_connect("/product_socket/websocket?vsn=2.0.0", headers=cookies)


def send(ws, ref, topic, event, payload=None):
    ws.send_text(json.dumps([ref, ref, topic, event, payload or {}]))
    return json.loads(ws.receive_text())


def moved(client, hub, live, line):
    live.lines[line.product_id] = line
    client.portal.call(hub.publish, [LineMoved(line)])


def test_a_guest_is_refused_and_a_queue_that_is_not_one_says_so(parts):
    client, _hub, _live, _rooms = parts
    with connect(client, None) as ws:
        refused = send(ws, "1", "queue:2", "phx_join")
        assert refused[4]["status"] == "error" and refused[4]["response"]["reason"] == "sign_in_required"
        assert "sign in" in refused[4]["response"]["message"]
        assert send(ws, "2", "queue:x", "phx_join")[4]["response"]["reason"] == "bad_request"
    with connect(client, "ada-session") as ws:
        refused = send(ws, "1", "queue:1", "phx_join")
        assert refused[4]["response"] == {"reason": "queue_refused", "message": "product 1 is not sold through a queue"}
        # Refused, it is not joined: asked again, it is asked anew (and refused again, the same way).
        assert send(ws, "2", "queue:1", "phx_join")[4]["response"]["reason"] == "queue_refused"


def test_a_tab_is_told_its_place_as_the_line_moves_and_its_turn_from_the_waiting_room(parts):
    client, hub, live, rooms = parts
    ada = account_shopper_id(ADA.id)
    live.lines[2] = WaitingLine(2, 1, opened=False, head=0, waiting=5)
    with connect(client, "ada-session") as ws:
        joined = send(ws, "1", "queue:2", "phx_join")
        assert joined[4] == {"status": "ok", "response": {"entry": "e-ada", "stage": "pre_queue", "waiting": 5,
                                                          "sold_out": False}}
        # The release: the shuffle put Ada fourth. The line cannot say so: her place is read again.
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.QUEUE, number=3)
        moved(client, hub, live, WaitingLine(2, 2, opened=True, head=0, pace_per_minute=60.0, waiting=5))
        told = json.loads(ws.receive_text())
        assert told[2:4] == ["queue:2", "place"] and rooms.reads == 1
        assert told[4] == {"entry": "e-ada", "stage": "queue", "position": 4, "ahead": 3, "wait_s": 4.0,
                           "sold_out": False}
        # Two let in, one of those ahead taken out: from the summary alone.
        moved(client, hub, live, WaitingLine(2, 3, opened=True, head=2, left=(2,), pace_per_minute=60.0, waiting=2))
        assert json.loads(ws.receive_text())[4]["position"] == 1 and rooms.reads == 1
        # Sold out for now: she is told at once.
        moved(client, hub, live, WaitingLine(2, 4, opened=True, head=2, left=(2,), pace_per_minute=60.0, sold_out=True,
                                             waiting=2))
        assert json.loads(ws.receive_text())[4]["sold_out"] is True
        # Her turn: the head passed her; the waiting room says until when.
        until = datetime.now(timezone.utc).timestamp() + 300
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.ADMITTED, until=until)
        moved(client, hub, live, WaitingLine(2, 5, opened=True, head=4, pace_per_minute=60.0, waiting=1))
        turn = json.loads(ws.receive_text())[4]
        assert turn["stage"] == "admitted" and turn["until"] == until and 295 < turn["left_s"] <= 300
        # A move that changes nothing she sees tells her nothing (a heartbeat answers next, not a push).
        moved(client, hub, live, WaitingLine(2, 6, opened=True, head=5, pace_per_minute=60.0, waiting=0))
        heartbeat = send(ws, "9", "phoenix", "heartbeat")
        assert heartbeat[2] == "phoenix" and heartbeat[4]["status"] == "ok"
        # A second tab finds the same place.
        with connect(client, "ada-session") as other:
            assert send(other, "1", "queue:2", "phx_join")[4]["response"]["stage"] == "admitted"
