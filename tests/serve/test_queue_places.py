"""A queue channel replica's index of its tabs' places (serve/queue_places.py), held to the rule asked
of each place."""

from __future__ import annotations

import itertools
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.waiting_room import LinePlace, Stage
from sneakers23.serve.queue_places import LastTold, TabPlaces, news_in_the_database


@settings(max_examples=300, deadline=None)
@example([(0, Stage.QUEUE, 5, None), (1, Stage.QUEUE, 1, None)], [(True, 3, [5], False)])  # (taken out, passed)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(list(Stage)), st.none() | st.integers(0, 40),
                          st.none() | st.floats(0, 2)), max_size=40),
       st.lists(st.tuples(st.booleans(), st.integers(0, 45), st.lists(st.integers(0, 45), max_size=4),
                          st.booleans()), min_size=1, max_size=4))
def test_the_tabs_whose_place_has_news_are_those_a_look_at_each_would_find(changes, lines):
    """The index (`TabPlaces.with_news`) against the rule itself, asked of every tab: places set,
    changed and dropped in any order (several tabs a number, numbers reused), lines moving on."""
    now = time.time()
    places, kept = TabPlaces(), {}
    for (tab, stage, number, until), (opened, head, left, turns) in zip(changes, itertools.cycle(lines)):
        if stage is Stage.REMOVED and number is None:  # (a tab closed)
            assert places.pop(tab) == kept.pop(tab, None)
        else:
            places[tab] = kept[tab] = LinePlace(f"a{tab}", f"e{tab}", stage, number,
                                                None if until is None else now + until - 1)
        line = WaitingLine(2, 1, opened, head, tuple(left))
        expected = {tab for tab, place in kept.items()
                    if news_in_the_database(place, line) or (turns and place.stage is Stage.ADMITTED)}
        assert places.with_news(line, turns) == expected
        assert len(places) == len(kept) and set(places) == set(kept)


def test_a_tab_leaving_and_joining_again_and_again_does_not_grow_the_index():
    """(A number's tabs all gone and one back: its number goes into the heap again. The heap is
    rebuilt from the numbers held once it holds more than twice as many, so it stays bounded.)"""
    places = TabPlaces()
    places["steady"] = LinePlace("a1", "e1", Stage.QUEUE, 7)
    for _ in range(10_000):
        places["reloading"] = LinePlace("a2", "e2", Stage.QUEUE, 500)
        places.pop("reloading")
    assert len(places._numbers) <= 2 * 2 + 64
    places["reloading"] = LinePlace("a2", "e2", Stage.QUEUE, 500)
    assert places.with_news(WaitingLine(2, 1, True, 8, ())) == {"steady"}
    assert places.with_news(WaitingLine(2, 1, True, 501, ())) == {"steady", "reloading"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["told", "forget", "due"]), st.integers(0, 12), st.integers(0, 50)),
                max_size=80))
def test_the_tabs_due_a_new_position_are_those_told_longest_ago_by_the_time_asked(steps):
    """`LastTold.due` against a look at every tab: tabs told, told again (at any time, a pass's share
    earlier than the last), forgotten, and taken when due (then told again, as the channels do)."""
    last_told, kept = LastTold(), {}
    for kind, tab, at in steps:
        if kind == "told":
            last_told.told(tab, float(at))
            kept[tab] = float(at)
        elif kind == "forget":
            last_told.forget(tab)
            kept.pop(tab, None)
        else:
            most = 1 + tab % 4
            expected = sorted((when, n) for n, when in kept.items() if when <= at)[:most]
            got = last_told.due(float(at), most)
            assert [(when, kept[n]) for when, n in got] == [(when, when) for when, _n in expected]  # (the longest ago first)
            assert {n for _when, n in got} <= {n for n, w in kept.items() if w <= at}
            for _when, n in got:  # (taken out until told again: told again now, a moment on)
                last_told.told(n, float(at) + 0.5)
                kept[n] = float(at) + 0.5
        assert len(last_told) == len(kept)


def test_a_tab_told_again_and_again_does_not_grow_the_heap():
    last_told = LastTold()
    last_told.told("steady", 0.0)
    for n in range(10_000):
        last_told.told("busy", float(n))
    assert len(last_told._order) + len(last_told._earlier) <= 2 * 2 + 64
    assert last_told.due(5.0, 10) == [(0.0, "steady")] and last_told.due(20_000.0, 10) == [(9999.0, "busy")]
