"""A channel replica's tab tracker and a dashboard's presence mirror, against a board in memory."""

from __future__ import annotations

import asyncio

from sneakers23.domain.presence import PresenceBoard, Report, TabJoined, TabLeft
from sneakers23.serve.presence import PresenceMirror, TabTracker, page_of
from tests.support.aio import run
from harness.waiting import until


class Board:
    """The presence actor's board, called as the actor would be (and made to fail on demand)."""

    def __init__(self):
        self.board = PresenceBoard("epoch")
        self.reports = []
        self.failing = False

    async def report(self, report) -> bool:
        if self.failing:
            raise ConnectionError("the presence actor is restarting")
        self.reports.append(report)
        return self.board.report(report, 0.0)

    async def follow(self, epoch: str, cursor: int):
        return self.board.read(epoch, cursor)


def test_a_tracker_reports_its_tabs_as_few_deltas_and_everything_when_the_board_lost_them():
    board = Board()
    tracker = TabTracker("node-1", board.report, lambda: 7)

    async def scenario():
        one, two = object(), object()
        tracker.joined(one, "alice", "/", [])
        tracker.joined(two, "bob", "/checkout", [3])
        tracker.cart_changed("alice", [5, 2])
        tracker.delivered(await board.report(tracker.next_report()))  # the first is the whole state
        assert board.reports[-1].full and board.board.tabs == 2 and board.reports[-1].sockets == 7
        state = board.board.state()
        assert state["alice"]["metas"][0]["items"] == [2, 5] and state["bob"]["metas"][0]["page"] == "/checkout"

        tracker.left(two)
        tracker.cart_changed("alice", [2])
        tracker.cart_changed("alice", [2])  # (no change: nothing to say)
        report = tracker.next_report()
        assert not report.full and len(report.deltas) == 2 and any(isinstance(d, TabLeft) for d in report.deltas)
        tracker.delivered(await board.report(report))
        assert set(board.board.state()) == {"alice"}

        # A report lost on the way (the actor restarting): the next one is the whole state again.
        tracker.joined(two, "bob", "/", [])
        board.failing = True
        try:
            await board.report(tracker.next_report())
        except ConnectionError:
            tracker.failed()
        board.failing = False
        again = tracker.next_report()
        assert again.full
        tracker.delivered(await board.report(again))
        assert set(board.board.state()) == {"alice", "bob"}

    run(scenario())


def test_a_tracker_reports_by_itself_and_a_mirror_follows_the_board():
    board = Board()
    tracker = TabTracker("node-1", board.report, lambda: 1)
    states, diffs = [], []
    mirror = PresenceMirror(board.follow, states.append, diffs.append)

    async def scenario():
        reporting = asyncio.get_running_loop().create_task(tracker.report_forever())
        tab = object()
        tracker.joined(tab, "alice", "/", [])
        await until(lambda: board.board.tabs, what="the join on the board")
        mirror.take(await board.follow("", 0))
        tracker.cart_changed("alice", [9])
        tracker.left(tab)
        tracker.joined(object(), "carol", "/orders", [])
        await until(lambda: set(board.board.state()) == {"carol"}, what="carol alone on the board")
        mirror.take(await board.follow(board.board.epoch, 1))
        reporting.cancel()

    run(scenario())
    assert len(states) == 1 and diffs
    assert mirror.state == board.board.state() and set(mirror.state) == {"carol"}


def test_a_tab_says_its_page_or_gets_the_catalog():
    assert page_of({"page": "/checkout"}) == "/checkout"
    for params in (None, [], {}, {"page": 3}, {"page": "checkout"}, {"page": "/" + "x" * 100}, {"page": "/\n"}):
        assert page_of(params) == "/"


def test_a_mirror_starts_again_from_the_whole_state_when_the_board_is_a_new_one():
    boards = [Board()]
    states, diffs = [], []
    calls = []

    async def follow(epoch: str, cursor: int):
        calls.append((epoch, cursor))
        if len(calls) == 3:
            raise ConnectionError("the presence actor died")  # (the mirror waits a heartbeat, then asks again)
        read = boards[-1].board.read(epoch, cursor)
        if not read.diffs and read.state is None:
            await asyncio.sleep(0.01)
        return read

    mirror = PresenceMirror(follow, states.append, diffs.append)

    async def scenario():
        board = boards[-1]
        await board.report(Report("s", "n", 1, (joined("t1", "alice"),), full=True))
        following = asyncio.get_running_loop().create_task(mirror.follow_forever())
        await until(lambda: "alice" in mirror.state)
        await board.report(Report("s", "n", 2, (joined("t2", "bob"),)))
        await until(lambda: "bob" in mirror.state)
        restarted = Board()  # the actor restarted: a new epoch, and the source sent its whole state
        restarted.board = PresenceBoard("epoch-2")
        await restarted.report(Report("s", "n", 9, (joined("t3", "carol"),), full=True))
        boards.append(restarted)
        await until(lambda: set(mirror.state) == {"carol"}, timeout=5)
        following.cancel()

    run(scenario())
    # The whole state at the start, again after the failed call, and again from the new board.
    assert [set(state) for state in states] == [{"alice"}, {"alice", "bob"}, {"carol"}]
    assert calls[:2] == [("", 0), ("epoch", 1)] and calls[3][0] == ""  # (any cursor: a new epoch reads the state)


def joined(tab, shopper):
    return TabJoined(tab, shopper, {"page": "/", "node": "n", "items": [], "online_at": 1})
