"""The presence board: Phoenix Presence diffs from the sources' reports, healing, expiry."""

from sneakers23.domain.presence import BoardRead, PresenceBoard, Report, TabJoined, TabLeft, apply_diff


def joined(tab, shopper, page="/", items=(), node="n1"):
    return TabJoined(tab, shopper, {"page": page, "node": node, "items": list(items), "online_at": 1})


def test_joins_updates_and_leaves_become_phoenix_diffs():
    board = PresenceBoard("epoch-1")
    assert board.report(Report("s1", "n1", 1, (joined("t1", "alice"), joined("t2", "alice"), joined("t3", "bob")), full=True), 0)
    assert (board.tabs, board.shoppers) == (3, 2)
    first = board.read("", 0)
    assert first.state is not None and len(first.state["alice"]["metas"]) == 2

    assert board.report(Report("s1", "n1", 2, (joined("t1", "alice", items=[7]),)), 1)
    read = board.read(first.epoch, first.cursor)
    (diff,) = read.diffs
    # An update leaves with the old phx_ref and joins with a new one, as Phoenix does.
    assert diff.joins["alice"]["metas"][0]["items"] == [7]
    assert diff.leaves["alice"]["metas"][0]["items"] == []
    assert diff.joins["alice"]["metas"][0]["phx_ref"] != diff.leaves["alice"]["metas"][0]["phx_ref"]

    mirror = first.state
    apply_diff(mirror, diff)
    assert board.report(Report("s1", "n1", 3, (TabLeft("t3"),)), 2)
    for later in board.read(read.epoch, read.cursor).diffs:
        apply_diff(mirror, later)
    assert mirror == board.state()
    assert set(mirror) == {"alice"} and board.shoppers == 1


def test_a_lost_report_asks_the_source_for_everything():
    board = PresenceBoard("e")
    assert not board.report(Report("s1", "n1", 1, (joined("t1", "a"),)), 0)  # unknown source
    assert board.report(Report("s1", "n1", 5, (joined("t1", "a"), joined("t2", "b")), full=True), 0)
    assert not board.report(Report("s1", "n1", 7, (TabLeft("t1"),)), 0)  # 6 was lost
    # The whole state heals it: t1 gone, t2 kept (no diff for what is unchanged), t3 new.
    cursor = board.cursor
    assert board.report(Report("s1", "n1", 8, (joined("t2", "b"), joined("t3", "c")), full=True), 0)
    (diff,) = board.read("e", cursor).diffs
    assert set(diff.joins) == {"c"} and set(diff.leaves) == {"a"}
    assert set(board.state()) == {"b", "c"}


def test_a_silent_source_leaves_with_its_tabs():
    board = PresenceBoard("e", timeout_s=5)
    board.report(Report("s1", "n1", 1, (joined("t1", "a"),), full=True, sockets=3), 0)
    board.report(Report("s2", "n2", 1, (joined("t2", "b", node="n2"),), full=True, sockets=4), 0)
    board.report(Report("s2", "n2", 2, ()), 4)  # s2's heartbeat
    assert board.nodes(4)["n1"]["sockets"] == 3
    assert board.expire(5.5) == ["s1"]
    assert set(board.state()) == {"b"} and set(board.nodes(5.5)) == {"n2"}
    assert not board.report(Report("s1", "n1", 2, ()), 6)  # it comes back: everything, please


def test_a_follower_too_far_behind_or_of_another_life_gets_the_whole_state():
    board = PresenceBoard("e", diffs_kept=2)
    board.report(Report("s", "n", 1, (joined("t1", "a"),), full=True), 0)
    for seq, tab in enumerate(["t2", "t3", "t4"], start=2):
        board.report(Report("s", "n", seq, (joined(tab, tab),)), 0)
    assert board.read("e", 0).state is not None  # its diffs are gone
    assert board.read("other", board.cursor).state is not None
    assert board.read("e", board.cursor) == BoardRead("e", board.cursor)
