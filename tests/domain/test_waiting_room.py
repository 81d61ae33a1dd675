"""The waiting room's rules: one place per account, the pre-queue shuffled at the release (checkably,
and independently of arrival), a pace, a stock it knows, and positions that stay right."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sneakers23.domain.fairness import verify
from sneakers23.domain.drops import DropMode
from sneakers23.domain.waiting_room import (JoinRefusal, LinePlace, Stage, WaitingRoom, default_pace, join_refused,
                                            numbers_at_the_opening, place_in_line, turns_ended)

SEED = bytes(range(32))


def room(pace: float = 60.0, **options) -> WaitingRoom:
    return WaitingRoom(SEED, pace_per_minute=pace, **options)


def filled(waiting: WaitingRoom, count: int, prefix: str = "acct") -> list[str]:
    accounts = [f"{prefix}-{n}" for n in range(count)]
    for account in accounts:
        waiting.join(account, f"entry-of-{account}")
    return accounts


def test_a_place_is_for_a_signed_in_unlocked_account_in_a_queue_whose_release_is_set():
    def why(mode=DropMode.QUEUE, scheduled=True, released=False, signed_in=True, locked=False):
        refused = join_refused(2, mode, scheduled, released, signed_in, locked)
        return None if refused is None else refused[0]

    assert why() is None and why(scheduled=False, released=True) is None
    assert why(mode=DropMode.FIRST_COME) is JoinRefusal.NOT_A_QUEUE
    assert why(mode=DropMode.DRAW) is JoinRefusal.NOT_A_QUEUE
    assert why(scheduled=False) is JoinRefusal.NOT_SCHEDULED
    assert why(signed_in=False) is JoinRefusal.SIGN_IN_REQUIRED
    assert why(locked=True) is JoinRefusal.ACCOUNT_LOCKED
    assert "locked" in join_refused(2, DropMode.QUEUE, True, False, True, True)[1]


def test_one_place_per_account_whatever_tab_or_device_asks():
    waiting = room()
    assert waiting.join("ada", "e-1") == "e-1"
    assert waiting.join("ada", "e-2") == "e-1"  # a second tab: the same place
    assert waiting.place("ada").stage is Stage.PRE_QUEUE and waiting.place("bob") is None
    waiting.open(now=0)
    assert waiting.join("ada", "e-3") == "e-1"  # after the release too
    assert waiting.counts()["queue"] == 1
    with pytest.raises(ValueError, match="another account's"):
        waiting.join("bob", "e-1")  # an entry id names one account: the shuffle's record lists it once


def test_the_pre_queue_is_shuffled_at_the_release_checkably_and_later_arrivals_queue_behind_in_order():
    waiting = room()
    early = filled(waiting, 50, "early")
    record = waiting.open(now=100.0)
    assert verify(record) == []
    shuffled = [f"early-{entry.removeprefix('entry-of-early-')}" for entry in record.order]
    assert shuffled != early and sorted(shuffled) == sorted(early)
    late = filled(waiting, 5, "late")
    assert waiting.waiting() == shuffled + late
    # Each number in line at the release is the entry's place in the published shuffle (what a
    # channel replica tells its tabs from, with no read of their places); those after go behind.
    numbers = numbers_at_the_opening(record)
    assert {f"early-{entry.removeprefix('entry-of-early-')}": n for entry, n in numbers.items()} == \
        {account: waiting.number(account) for account in early}
    assert [waiting.number(account) for account in late] == list(range(50, 55))
    assert [waiting.place(a).position for a in shuffled + late] == list(range(1, 56))
    with pytest.raises(ValueError, match="open already"):
        waiting.open(now=101.0)


def test_admission_follows_the_pace_and_saves_up_no_more_than_a_second():
    waiting = room(pace=120.0)  # two a second
    accounts = filled(waiting, 20)
    waiting.open(now=0.0)
    assert waiting.tick(now=0.0, pairs_left=100) == ([], [])
    let_in, _ = waiting.tick(now=0.5, pairs_left=100)
    assert len(let_in) == 1 and waiting.may_buy(let_in[0], now=0.5)
    assert len(waiting.tick(now=1.5, pairs_left=100)[0]) == 2
    # Nobody asked for a minute: a second's worth at once, not 120.
    assert len(waiting.tick(now=61.5, pairs_left=100)[0]) == 2
    assert waiting.place(waiting.waiting()[0]).wait_s == pytest.approx(0.5)
    waiting.pace_per_minute = 0  # the staff pause it
    assert waiting.tick(now=70.0, pairs_left=100)[0] == [] and waiting.place(waiting.waiting()[0]).wait_s is None
    assert len(accounts) - len(waiting.waiting()) == 5


def test_it_knows_the_stock_sold_out_tells_everyone_and_pairs_given_back_let_the_next_in():
    waiting = room(pace=600.0, window_s=120.0)
    filled(waiting, 6)
    waiting.open(now=0.0)
    first, _ = waiting.tick(now=1.0, pairs_left=2)
    assert len(first) == 2 and waiting.held() == 2 and waiting.sold_out  # both pairs held: no more
    assert all(waiting.place(a).sold_out and waiting.place(a).wait_s is None for a in waiting.waiting())
    assert waiting.tick(now=2.0, pairs_left=2)[0] == []
    # One buys (the stock drops to 1, its hold ends); the other lets its window pass.
    waiting.bought(first[0])
    assert waiting.place(first[0]).stage is Stage.BOUGHT and not waiting.may_buy(first[0], now=2.0)
    assert waiting.tick(now=3.0, pairs_left=1)[0] == []  # the last pair is still held
    let_in, expired = waiting.tick(now=121.0, pairs_left=1)
    assert expired == [first[1]] and waiting.place(first[1]).stage is Stage.EXPIRED
    assert len(let_in) == 1 and waiting.sold_out  # the expiry gave its pair to the next, who holds it
    # A restock of 3 pairs: admission resumes for as many.
    assert len(waiting.tick(now=122.0, pairs_left=4)[0]) == 3
    assert waiting.counts() == {"pre_queue": 0, "queue": 0, "admitted": 4, "bought": 1, "expired": 1,
                                "removed": 0, "held": 4}


def test_a_purchase_needs_a_live_admission():
    waiting = room(pace=60.0, window_s=10.0)
    filled(waiting, 2)
    waiting.open(now=0.0)
    (admitted,), _ = waiting.tick(now=1.0, pairs_left=5)
    other = waiting.waiting()[0]
    assert waiting.may_buy(admitted, now=10.9) and not waiting.may_buy(admitted, now=11.0)
    assert not waiting.may_buy(other, now=1.0) and not waiting.may_buy("stranger", now=1.0)


def test_locked_accounts_leave_listed_before_the_shuffle_and_from_the_line_after():
    waiting = room(pace=6000.0)
    accounts = filled(waiting, 10)
    assert waiting.remove(accounts[3])
    record = waiting.open(now=0.0)
    assert [(r.entry, r.reason) for r in record.removed] == [(f"entry-of-{accounts[3]}", "account locked")]
    assert verify(record) == [] and len(record.order) == 9
    assert f"entry-of-{accounts[3]}" not in numbers_at_the_opening(record) and waiting.number(accounts[3]) is None
    line = waiting.waiting()
    assert waiting.remove(line[4]) and not waiting.remove(line[4])
    assert [waiting.place(a).position for a in waiting.waiting()] == list(range(1, 9))
    assert waiting.tick(now=1.0, pairs_left=100)[0] == [a for a in line if a != line[4]][:8]


def test_positions_stay_right_through_any_mix_of_joins_admissions_and_removals():
    """Against the plain count of who is in front, over random runs."""
    for run in range(30):
        rng = random.Random(run)
        waiting = room(pace=rng.choice([30.0, 120.0, 600.0]), window_s=5.0)
        filled(waiting, rng.randrange(0, 40), "pre")
        waiting.open(now=0.0)
        now, joined = 0.0, 0
        for _ in range(200):
            now += rng.random()
            action = rng.random()
            if action < 0.4:
                waiting.join(f"late-{joined}", f"late-entry-{joined}")
                joined += 1
            elif action < 0.5 and waiting.waiting():
                waiting.remove(rng.choice(waiting.waiting()))
            else:
                waiting.tick(now, pairs_left=rng.randrange(0, 10))
            line = waiting.waiting()
            assert [waiting.place(a).position for a in line] == list(range(1, len(line) + 1))


_STEPS = st.lists(st.one_of(st.tuples(st.just("join"), st.integers(0, 0)),
                            st.tuples(st.just("remove"), st.integers(0, 99)),
                            st.tuples(st.just("bought"), st.integers(0, 99)),
                            st.tuples(st.just("tick"), st.integers(0, 12))), max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 12), _STEPS)
def test_the_lines_counts_tell_when_a_live_turn_may_have_ended(pre_queue, steps):
    """`turns_ended` between any two lines of a room (a replica may miss those between): True
    whenever a turn live at the first is not at the second (used, ended, its account taken out);
    False when nothing but joins and admissions came between."""
    waiting = room(pace=600.0, window_s=2.0)
    filled(waiting, pre_queue, "pre")
    waiting.open(now=0.0)
    now, seen = 0.0, [(waiting.line(), set(waiting.admitted()), False)]
    for n, (action, pick) in enumerate(steps):
        ended = False
        if action == "join":
            waiting.join(f"late-{n}", f"late-entry-{n}")
        elif action == "remove" and (candidates := waiting.waiting() + waiting.admitted()):
            account = candidates[pick % len(candidates)]
            ended = account in waiting.admitted()
            waiting.remove(account)
        elif action == "bought" and waiting.admitted():
            waiting.bought(waiting.admitted()[pick % len(waiting.admitted())])
            ended = True
        elif action == "tick":
            now += 0.5
            ended = bool(waiting.tick(now, pairs_left=pick)[1])
        seen.append((waiting.line(), set(waiting.admitted()), ended))
    for i, (before, live_before, _) in enumerate(seen):
        for j in range(i + 1, len(seen)):
            after, live_after, _ = seen[j]
            if live_before - live_after:
                assert turns_ended(before, after), (i, j)
            if not any(ended for _, _, ended in seen[i + 1:j + 1]) and \
                    not any(action == "remove" for action, _ in steps[i:j]):
                assert not turns_ended(before, after), (i, j)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="pace"):
        WaitingRoom(SEED, pace_per_minute=-1)
    with pytest.raises(ValueError, match="window"):
        WaitingRoom(SEED, pace_per_minute=1, window_s=0)


def test_arriving_early_in_the_pre_queue_gains_nothing_5000_early_5000_late_over_20_runs():
    """The issue's fairness figure: after the shuffle, the early arrivals' positions and the late
    ones' come from one distribution (two-sample Kolmogorov-Smirnov, p > 0.01 in each of 20 runs,
    each with its own seed)."""
    p_values = []
    for run in range(20):
        waiting = WaitingRoom(hashlib.sha256(f"drop {run}".encode()).digest(), pace_per_minute=60)
        early, late = filled(waiting, 5_000, "early"), filled(waiting, 5_000, "late")
        waiting.open(now=0.0)
        p_values.append(stats.ks_2samp([waiting.place(a).position for a in early],
                                       [waiting.place(a).position for a in late]).pvalue)
    assert min(p_values) > 0.01, p_values


def kept(waiting: WaitingRoom, arrival: list[str]) -> list[LinePlace]:
    """What the database keeps of each place (db/waiting_rooms.py), in arrival order."""
    places = []
    for account in arrival:
        place = waiting.place(account)
        places.append(LinePlace(account, place.entry, place.stage, waiting.number(account), waiting.until(account)))
    return places


def test_a_room_restored_from_what_the_database_keeps_goes_on_as_if_it_never_stopped():
    waiting = room(pace=600.0, window_s=60.0)
    arrival = filled(waiting, 30)
    record = waiting.open(now=0.0)
    arrival += filled(waiting, 5, "late")
    waiting.tick(now=1.0, pairs_left=20)  # ten let in
    let_in = [a for a in arrival if waiting.place(a).stage is Stage.ADMITTED]
    waiting.bought(let_in[0])
    taken_out = waiting.waiting()[3]
    waiting.remove(taken_out)
    again = WaitingRoom.restore(SEED, 600.0, 60.0, 1, kept(waiting, arrival), record, opened_at=0.0)
    assert [again.place(a) for a in arrival] == [waiting.place(a) for a in arrival]
    assert again.line() == waiting.line() and again.held() == waiting.held() == 9
    assert again.waiting() == waiting.waiting()
    # Both let the same next shoppers in, and nobody twice.
    assert again.tick(now=2.0, pairs_left=19) == waiting.tick(now=2.0, pairs_left=19)
    later, _ended = again.tick(now=3.0, pairs_left=40)
    assert later and set(later).isdisjoint(let_in)


def test_a_room_restored_before_its_release_keeps_its_pre_queue_and_shuffles_it_the_same():
    waiting = room()
    arrival = filled(waiting, 20)
    again = WaitingRoom.restore(SEED, 60.0, 300.0, 1, kept(waiting, arrival), None, opened_at=None)
    assert again.open(now=5.0) == waiting.open(now=5.0)  # the same seed, the same entries: the same order
    assert again.waiting() == waiting.waiting()


def test_a_place_let_into_the_line_but_not_numbered_yet_is_joined_again_as_new():
    waiting = room()
    waiting.open(now=0.0)
    places = [LinePlace("ada", "e-ada", Stage.QUEUE, 0), LinePlace("bob", "e-bob", Stage.QUEUE, None)]
    again = WaitingRoom.restore(SEED, 60.0, 300.0, 1, places, waiting.record, opened_at=0.0)
    assert again.place("bob") is None and again.join("bob", "e-bob") == "e-bob"
    assert again.number("bob") == 1 and again.place("bob").position == 2


def test_a_tab_shows_its_place_from_the_lines_summary_as_the_room_does():
    waiting = room(pace=120.0)
    arrival = filled(waiting, 12)
    waiting.open(now=0.0)
    waiting.tick(now=1.0, pairs_left=50)
    waiting.remove(waiting.waiting()[2])
    line = waiting.line(product_id=7, version=3)
    assert (line.product_id, line.version, line.opened, line.waiting) == (7, 3, True, 12 - 2 - 1)
    in_line = waiting.waiting()
    shown = [place_in_line(waiting.place(a).entry, waiting.number(a), line) for a in in_line]
    assert [(s.position, s.ahead, s.wait_s) for s in shown] == [(n, n - 1, n * 0.5) for n in range(1, len(in_line) + 1)]
    for account in set(arrival) - set(in_line):  # let in, or taken out: the line cannot say where
        assert place_in_line(waiting.place(account).entry, waiting.number(account), line) is None
    assert default_pace(pairs_left=30, engine_per_minute=600) == 30.0  # every pair offered within a minute
    assert default_pace(pairs_left=5000, engine_per_minute=600) == 600.0  # no faster than the engine sells
    assert default_pace(pairs_left=0, engine_per_minute=600) == 1.0
