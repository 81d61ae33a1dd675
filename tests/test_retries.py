"""Trying again: while the database is away, with a wait that grows and is drawn at random."""

from __future__ import annotations

import time

import pytest

from sneakers23.errors import DatabaseUnavailable
from sneakers23.retries import backoff, patiently, pause
from tests.support.aio import run


def test_patiently_tries_again_while_the_database_is_away_then_returns_what_the_work_gives():
    tries = []

    def load():
        tries.append(time.monotonic())
        if len(tries) < 4:
            raise DatabaseUnavailable("cannot reach the database")
        return "loaded"

    assert patiently(load, "a test", first_delay_s=0.01, longest_delay_s=0.05) == "loaded"
    assert len(tries) == 4


def test_patiently_does_not_try_again_on_other_errors():
    tries = []

    def broken():
        tries.append(1)
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        patiently(broken, "a test", first_delay_s=0.01)
    assert tries == [1]


def test_the_waits_are_jittered_and_bounded():
    from tenacity import RetryCallState

    wait = backoff(0.1, 0.4)
    states = []
    for attempt in (1, 2, 3, 8):
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        states.append([wait(state) for _ in range(200)])
    assert all(0 <= w <= 0.4 for waits in states for w in waits)
    assert len({round(w, 6) for w in states[0]}) > 100, "drawn at random, so that many callers spread out"
    assert max(states[0]) <= 0.2 < max(states[3]), "longer after more failures, up to the bound"

    started = time.monotonic()
    run(pause(0.05))
    assert time.monotonic() - started < 1.0
