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

from harness.waiting import wait_for
from sneakers23.domain.accounts import Account, account_shopper_id
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.fairness import ShuffleRecord
from sneakers23.domain.shopper_events import LineMoved
from sneakers23.domain.waiting_room import LinePlace, Stage
from sneakers23.errors import QueueProofUsed, QueueRefused
from sneakers23.serve.channels import ChannelHub
from sneakers23.serve.queue import QueueChannels
from sneakers23.serve.proof_of_work import ProofsOfWork
from sneakers23.serve.shoppers import SESSION_COOKIE, SessionCookies
from sneakers23.domain.throttle import Throttle
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
        self.proofs: set = set()
        self.reads = 0
        self.record: ShuffleRecord | None = None  # the pre-queue's shuffle, once the release came
        self.record_reads = 0

    async def session_account_async(self, token):
        return ADA if token == "ada-session" else None

    async def queue_place_async(self, shopper_id, product_id):
        return self.places.get(shopper_id) if product_id == 2 else None

    async def join_queue_async(self, shopper_id, product_id, proof=None):
        if product_id != 2:
            raise QueueRefused(f"product {product_id} is not sold through a queue")
        if proof is not None and proof in self.proofs:
            raise QueueProofUsed("this check that you are a person took a place already: reload the page")
        self.proofs.add(proof)
        return self.places.setdefault(shopper_id, LinePlace(shopper_id, "e-ada", Stage.PRE_QUEUE))

    async def queue_places_async(self, product_id, shopper_ids):
        self.reads += 1
        return {s: self.places[s] for s in shopper_ids if s in self.places}

    async def queue_record_async(self, product_id):
        self.record_reads += 1
        return ("commitment", self.record) if product_id == 2 else None


def shuffled(*order: str) -> ShuffleRecord:
    return ShuffleRecord("commitment", "00", "11", tuple(sorted(order)), order)


@pytest.fixture
def parts(request):
    live, rooms = Live(), Rooms()
    work, attempts = getattr(request, "param", (None, None))
    hub = ChannelHub(make_catalog(), [QueueChannels(live, rooms, SessionCookies(SECRET), work, attempts)])
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


def test_a_tab_that_joins_an_open_line_is_told_its_new_position_an_interval_after_its_join(parts, monkeypatch):
    """Its join counts as told: its next position comes an interval after it, not at the others'
    time nor never (a tab the rounds did not know of would be told nothing while the line moves)."""
    import time

    from sneakers23.serve import queue as queue_channels

    every_s = 0.5
    monkeypatch.setattr(queue_channels, "POSITIONS_EVERY_S", every_s)
    client, hub, live, rooms = parts
    ada = account_shopper_id(ADA.id)
    rooms.places[ada] = LinePlace(ada, "e-ada", Stage.QUEUE, 5)
    live.lines[2] = WaitingLine(2, 1, opened=True, head=0, pace_per_minute=60.0, waiting=6)
    with connect(client, "ada-session") as ws:
        assert send(ws, "1", "queue:2", "phx_join")[4]["response"]["position"] == 6
        joined_at = time.monotonic()
        moved(client, hub, live, WaitingLine(2, 2, opened=True, head=1, pace_per_minute=60.0, waiting=5))
        told = json.loads(ws.receive_text())
        told_at = time.monotonic()
        assert told[3] == "place" and told[4]["position"] == 5
        assert every_s - 0.05 <= told_at - joined_at <= every_s + 0.5, told_at - joined_at


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
        # The release: the shuffle put Ada fourth. The line cannot say so: her number is read from
        # the shuffle's record (one row, whatever the tabs), not from her place.
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.QUEUE, number=3)
        rooms.record = shuffled("e-b", "e-c", "e-d", "e-ada", "e-e")
        moved(client, hub, live, WaitingLine(2, 2, opened=True, head=0, pace_per_minute=60.0, waiting=5))
        told = json.loads(ws.receive_text())
        assert told[2:4] == ["queue:2", "place"] and (rooms.record_reads, rooms.reads) == (1, 0)
        assert told[4] == {"entry": "e-ada", "stage": "queue", "position": 4, "ahead": 3, "wait_s": 4.0,
                           "sold_out": False}
        # Two let in, one a tick, then one of those ahead taken out: from the summary alone, and
        # told once, from the latest line (positions are told at most every POSITIONS_EVERY_S).
        moved(client, hub, live, WaitingLine(2, 3, opened=True, head=1, pace_per_minute=60.0, waiting=4))
        moved(client, hub, live, WaitingLine(2, 4, opened=True, head=2, left=(2,), pace_per_minute=60.0, waiting=2))
        assert json.loads(ws.receive_text())[4]["position"] == 1 and (rooms.record_reads, rooms.reads) == (1, 0)
        # Sold out for now: she is told at once.
        moved(client, hub, live, WaitingLine(2, 5, opened=True, head=2, left=(2,), pace_per_minute=60.0, sold_out=True,
                                             waiting=2))
        assert json.loads(ws.receive_text())[4]["sold_out"] is True
        # Her turn: the head passed her; the waiting room says until when.
        until = datetime.now(timezone.utc).timestamp() + 300
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.ADMITTED, until=until)
        moved(client, hub, live, WaitingLine(2, 6, opened=True, head=4, pace_per_minute=60.0, waiting=1))
        turn = json.loads(ws.receive_text())[4]
        assert turn["stage"] == "admitted" and turn["until"] == until and 295 < turn["left_s"] <= 300
        # A move that changes nothing she sees tells her nothing (a heartbeat answers next, not a push),
        # even when every tab is told: her turn's time left ticks by itself, it is not news.
        moved(client, hub, live, WaitingLine(2, 7, opened=True, head=5, pace_per_minute=60.0, waiting=0))
        queue = next(kind for kind in hub._kinds if isinstance(kind, QueueChannels))
        client.portal.call(queue._tell_all, 2)
        heartbeat = send(ws, "9", "phoenix", "heartbeat")
        assert heartbeat[2] == "phoenix" and heartbeat[4]["status"] == "ok"
        # A second tab finds the same place.
        with connect(client, "ada-session") as other:
            assert send(other, "1", "queue:2", "phx_join")[4]["response"]["stage"] == "admitted"


def test_a_tab_that_joins_before_the_releases_numbers_are_written_is_told_its_number_at_the_next_line(parts):
    """The keeper publishes the opened line, then writes the shuffle's numbers, then the line again
    (a version on). A tab that joins between the two reads its place in the pre-queue: it is read
    again at that next line, and told its number."""
    client, hub, live, rooms = parts
    ada = account_shopper_id(ADA.id)
    rooms.places[ada] = LinePlace(ada, "e-ada", Stage.PRE_QUEUE)  # (her row: no number yet)
    rooms.record = shuffled("e-b", "e-c", "e-d", "e-ada", "e-e")
    opened = WaitingLine(2, 2, opened=True, head=0, pace_per_minute=60.0, waiting=5)
    live.lines[2] = opened
    with connect(client, "ada-session") as ws:
        assert send(ws, "1", "queue:2", "phx_join")[4]["response"]["stage"] == "pre_queue"
        wait_for(lambda: rooms.reads == 1, timeout=5, what="her place read again (no news yet)")
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.QUEUE, number=3)  # the numbers written
        moved(client, hub, live, replace(opened, version=3))
        told = json.loads(ws.receive_text())
        assert told[4]["stage"] == "queue" and told[4]["position"] == 4 and rooms.reads == 2


def test_a_tab_let_in_by_the_releases_own_tick_is_read_from_its_place_and_one_taken_out_before_too(parts):
    client, hub, live, rooms = parts
    ada = account_shopper_id(ADA.id)
    live.lines[2] = WaitingLine(2, 1, opened=False, head=0, waiting=3)
    with connect(client, "ada-session") as ws:
        assert send(ws, "1", "queue:2", "phx_join")[4]["response"]["stage"] == "pre_queue"
        # The release's tick let the first two in: Ada, drawn second, is past the head. The
        # record cannot say until when: her place is read (and only hers).
        until = datetime.now(timezone.utc).timestamp() + 300
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.ADMITTED, number=1, until=until)
        rooms.record = shuffled("e-b", "e-ada", "e-c")
        moved(client, hub, live, WaitingLine(2, 2, opened=True, head=2, pace_per_minute=60.0, waiting=1))
        told = json.loads(ws.receive_text())[4]
        assert told["stage"] == "admitted" and told["until"] == until
        assert (rooms.record_reads, rooms.reads) == (1, 1)
    # Taken out before the release (a lock), she is not in the shuffle's order: read from her place.
    rooms.places[ada] = LinePlace(ada, "e-ada", Stage.PRE_QUEUE)
    live.lines[2] = WaitingLine(2, 3, opened=False, head=0, waiting=3)  # (the shop seeded again)
    with connect(client, "ada-session") as ws:
        send(ws, "1", "queue:2", "phx_join")
        moved(client, hub, live, WaitingLine(2, 4, opened=False, head=0, waiting=3))
        rooms.places[ada] = replace(rooms.places[ada], stage=Stage.REMOVED)
        rooms.record = shuffled("e-b", "e-c")
        moved(client, hub, live, WaitingLine(2, 5, opened=True, head=0, pace_per_minute=60.0, waiting=2))
        assert json.loads(ws.receive_text())[4]["stage"] == "removed"
        assert (rooms.record_reads, rooms.reads) == (2, 2)


def test_a_turn_used_while_its_tab_joins_is_read_again(parts):
    """The line that counts the turn used moves while the tab's place is read (no tab of the product
    here yet: nobody is told it): the tab, told its turn from the place as read, is read again."""
    client, hub, live, rooms = parts
    ada = account_shopper_id(ADA.id)
    until = datetime.now(timezone.utc).timestamp() + 300
    rooms.places[ada] = LinePlace(ada, "e-ada", Stage.ADMITTED, number=0, until=until)
    live.lines[2] = WaitingLine(2, 1, opened=True, head=1, pace_per_minute=60.0, turns=(1, 0, 0))
    read = rooms.queue_place_async

    async def read_then_bought(shopper_id, product_id):
        place = await read(shopper_id, product_id)
        rooms.places[ada] = replace(place, stage=Stage.BOUGHT)  # (her purchase, on another node)
        live.lines[2] = WaitingLine(2, 2, opened=True, head=1, pace_per_minute=60.0, turns=(0, 1, 0))
        hub.publish([LineMoved(live.lines[2])])  # (on the hub's loop, as the live catalog tells it)
        return place

    rooms.queue_place_async = read_then_bought
    with connect(client, "ada-session") as ws:
        assert send(ws, "1", "queue:2", "phx_join")[4]["response"]["stage"] == "admitted"
        assert json.loads(ws.receive_text())[4]["stage"] == "bought"
        assert rooms.reads == 1


def test_the_dashboard_says_where_a_queue_stands_from_its_line():
    from sneakers23.serve.dashboard import queue_text

    assert "nobody has taken a place yet" in queue_text(None)
    assert queue_text(WaitingLine(2, 1, opened=False, head=0, waiting=1)) == \
        "queue: 1 shopper in the pre-queue, shuffled at the release"
    opened = WaitingLine(2, 2, opened=True, head=3, pace_per_minute=120.0, waiting=40, turns=(1, 2, 0))
    assert queue_text(opened) == ("queue: 40 shoppers waiting, 1 turn live (each holds a shopper's pairs), 2 bought, "
                                  "0 ended unused; letting in 120 a minute")
    assert queue_text(replace(opened, pace_per_minute=0.0)).endswith("paused")
    assert "sold out for now" in queue_text(replace(opened, sold_out=True))


def solved(work) -> str:
    """A fresh proof of work, solved as work.js solves it."""
    import base64

    import altcha

    challenge = json.loads(work.challenge())
    found = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], challenge["algorithm"],
                                      challenge["maxnumber"])
    fields = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**fields, "number": found.number}).encode()).decode()


WORK = ProofsOfWork(SECRET, 2_000, purpose="queue")


@pytest.mark.parametrize("parts", [(WORK, Throttle(4, window_s=3600))], indirect=True)
def test_a_new_place_costs_a_fresh_proof_of_work_once_and_an_address_is_held_past_its_places(parts):
    client, _hub, _live, rooms = parts
    with connect(client, "ada-session") as ws:
        missing = send(ws, "1", "queue:2", "phx_join")[4]["response"]
        assert missing["reason"] == "proof_of_work" and "did not run" in missing["message"]
        wrong = send(ws, "2", "queue:2", "phx_join", {"altcha": solved(ProofsOfWork("another key", 2_000, "queue"))})
        assert wrong[4]["response"]["reason"] == "proof_of_work"
        proof = solved(WORK)
        assert send(ws, "3", "queue:2", "phx_join", {"altcha": proof})[4]["status"] == "ok"
    # A second tab of the account holds the place already: no work, and no attempt counted.
    with connect(client, "ada-session") as ws:
        assert send(ws, "1", "queue:2", "phx_join")[4]["status"] == "ok"
    # A solution takes one place: sent again (for another account's place, say), it is refused.
    rooms.places.clear()
    with connect(client, "ada-session") as ws:
        reused = send(ws, "1", "queue:2", "phx_join", {"altcha": proof})[4]["response"]
        assert reused["reason"] == "proof_of_work" and "used already" in reused["message"]
        # The address has tried four places this hour: the fifth waits, told for how long.
        held = send(ws, "2", "queue:2", "phx_join", {"altcha": solved(WORK)})[4]["response"]
        assert held["reason"] == "too_many" and "try again in" in held["message"]


class Tab:
    """A socket as the queue channels see it: what it was sent."""

    def __init__(self):
        self.sent: list[str] = []

    def send(self, frame: str) -> None:
        self.sent.append(frame)


def test_every_tab_is_told_a_part_a_turn_of_the_loop_and_a_tell_meanwhile_reaches_every_tab_from_the_latest_line():
    import asyncio

    from sneakers23.serve.queue import TELLS_PER_TURN
    from tests.support.aio import run

    async def scenario():
        live, rooms = Live(), Rooms()
        queue = QueueChannels(live, rooms, SessionCookies(SECRET))
        tabs = [Tab() for _ in range(TELLS_PER_TURN * 2 + 10)]
        queue._places[2] = {tab: LinePlace(f"s{k}", f"e{k}", Stage.QUEUE, k) for k, tab in enumerate(tabs)}
        live.lines[2] = WaitingLine(2, 2, opened=True, head=0, pace_per_minute=60.0, waiting=len(tabs))
        queue._tell_all(2)
        # One part in this callback, not every tab (10,000 sends held the loop for 0.37 s).
        assert sum(len(tab.sent) for tab in tabs) == TELLS_PER_TURN
        queue._forget(tabs[-1], 2)  # (a tab that leaves before its part is told nothing)
        for _ in range(10):  # (turns of the loop, until the next part)
            if sum(len(tab.sent) for tab in tabs) > TELLS_PER_TURN:
                break
            await asyncio.sleep(0)
        assert sum(len(tab.sent) for tab in tabs) == 2 * TELLS_PER_TURN
        # The line sells out meanwhile: the pass goes on from the latest line, then another tells
        # the tabs it had passed (those told the sell-out already are sent nothing twice).
        live.lines[2] = WaitingLine(2, 3, opened=True, head=0, pace_per_minute=60.0, sold_out=True,
                                    waiting=len(tabs))
        queue._tell_all(2)
        assert sum(len(tab.sent) for tab in tabs) == 2 * TELLS_PER_TURN  # (the pass under way goes on)
        for _ in range(10):
            await asyncio.sleep(0)
        assert tabs[-1].sent == []
        assert all(json.loads(tab.sent[-1])[4]["sold_out"] is True for tab in tabs[:-1])
        assert [len(tab.sent) for tab in tabs[:-1]] == [2] * (2 * TELLS_PER_TURN) + [1] * 9  # (the last ones once)

    run(scenario())


def test_each_tab_is_told_its_new_position_an_interval_after_it_was_last_told_and_a_pass_spreads_the_next(
        monkeypatch):
    """While the line only moves positions, a tab is told POSITIONS_EVERY_S after it was last told,
    whatever told it (a tab that joins late is not told at the others' time, nor made to wait for
    them); after a pass over every tab (a sell-out's end here), the next are spread over
    POSITIONS_SPREAD_S, none later than the interval; once the line stands still, the rounds stop,
    and when it moves again every tab is told at once and the next are spread again."""
    import asyncio
    import time

    from harness.waiting import until
    from sneakers23.serve import queue as queue_channels
    from sneakers23.serve.queue_places import TabPlaces
    from tests.support.aio import run

    every_s, spread_s = 0.6, 0.3
    monkeypatch.setattr(queue_channels, "POSITIONS_EVERY_S", every_s)
    monkeypatch.setattr(queue_channels, "POSITIONS_SPREAD_S", spread_s)
    monkeypatch.setattr(queue_channels, "PACE_STEP_S", 0.01)
    monkeypatch.setattr(queue_channels, "OVERDUE_S", 0.25)

    class TimedTab(Tab):
        def __init__(self):
            super().__init__()
            self.at: list[float] = []

        def send(self, frame: str) -> None:
            super().send(frame)
            self.at.append(time.monotonic())

    async def scenario():
        live, rooms = Live(), Rooms()
        queue = QueueChannels(live, rooms, SessionCookies(SECRET))
        tabs = [TimedTab() for _ in range(10)]
        queue._places[2] = TabPlaces()
        for k, tab in enumerate(tabs):
            queue._places[2][tab] = LinePlace(f"s{k}", f"e{k}", Stage.QUEUE, 10 + k)
        lines = iter(range(2, 1000))

        def move(**changes) -> None:
            line = WaitingLine(2, next(lines), opened=True, head=0, pace_per_minute=60.0, waiting=len(tabs))
            live.lines[2] = replace(line, **changes)
            queue.publish([LineMoved(live.lines[2])])

        # Told as they joined: the first nine now, the last half an interval on.
        for tab in tabs[:9]:
            queue._told(tab, 2)
        move()  # (the first line this replica sees: every tab told at once)
        await until(lambda: all(tab.sent for tab in tabs), what="every tab told the line")
        started = time.monotonic()
        late = tabs[9]
        await until(lambda: time.monotonic() > started + every_s / 2, what="half an interval")
        queue._told(late, 2)
        late_at = time.monotonic()
        # Positions move at every tick: each tab is told again an interval after it was told.
        pace = 30.0
        while time.monotonic() < late_at + 2 * every_s:
            move(pace_per_minute=pace)
            pace += 1
            await asyncio.sleep(0.05)  # (the keeper's ticks: a move each, as it sends them)
        for tab in tabs[:9]:
            gaps = [b - a for a, b in zip(tab.at, tab.at[1:])]
            # (the first after the pass that told every tab comes sooner, by the tab's share of the spread)
            assert len(gaps) >= 2 and every_s - spread_s - 0.02 <= gaps[0] <= every_s + 0.15, gaps
            assert all(every_s - 0.02 <= gap <= every_s + 0.15 for gap in gaps[1:]), gaps
        assert late.at[1] >= late_at + every_s and late.at[1] - late_at <= every_s + 0.15, (late.at, late_at)

        # A sell-out and its end: every tab told at once, twice; the next positions come spread.
        move(sold_out=True)
        await until(lambda: all(json.loads(tab.sent[-1])[4]["sold_out"] for tab in tabs), what="the sell-out")
        move(sold_out=False)
        await until(lambda: not any(json.loads(tab.sent[-1])[4]["sold_out"] for tab in tabs), what="its end")
        ended_at = {tab: tab.at[-1] for tab in tabs}
        while time.monotonic() < max(ended_at.values()) + every_s + 0.2:
            move(pace_per_minute=pace)
            pace += 1
            await asyncio.sleep(0.02)  # (the keeper's ticks)
        next_at = [next((t for t in tab.at if t > ended_at[tab]), float("inf")) for tab in tabs]
        assert all(0 < next_at[k] - ended_at[tab] <= every_s + 0.15 for k, tab in enumerate(tabs)), (
            [round(next_at[k] - ended_at[tab], 3) for k, tab in enumerate(tabs)])
        assert max(next_at) - min(next_at) >= 0.6 * spread_s, next_at  # (spread, not all at once)

        # The line stands still: the rounds end once every tab was told its last move.
        await until(lambda: not queue._rounds[2].running, timeout=every_s + 2, what="the rounds to end")

        # It moves again long after (a pause, then letting in): every tab is due at once and told
        # at once; the next ones come spread, none later than the interval.
        stood_at = time.monotonic()
        await until(lambda: time.monotonic() > stood_at + every_s + 0.6, what="a while")
        before = {tab: len(tab.at) for tab in tabs}
        moved_at = time.monotonic()
        while time.monotonic() < moved_at + 2 * every_s + 0.2:
            move(pace_per_minute=pace)
            pace += 1
            await asyncio.sleep(0.02)  # (the keeper's ticks)
        first = [tab.at[before[tab]] for tab in tabs]
        second = [tab.at[before[tab] + 1] for tab in tabs]
        assert max(first) - moved_at < 0.1  # (all at once)
        assert all(0 < b - a <= every_s + 0.15 for a, b in zip(first, second)), [b - a for a, b in zip(first, second)]
        assert max(second) - min(second) >= 0.3 * spread_s, second  # (spread: random points of it)

    run(scenario())
