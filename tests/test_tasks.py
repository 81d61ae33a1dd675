"""Owned background tasks: held until they end, and a failure is logged, not lost."""

from __future__ import annotations

import asyncio
import gc
import logging

from sneakers23.tasks import InTurns, keep
from harness.waiting import until
from tests.support.aio import run as run_in_thread


def test_a_kept_task_is_held_until_it_ends_and_its_failure_is_logged(caplog):
    async def run() -> tuple[int, int]:
        tasks: set = set()
        release = asyncio.Event()

        async def waits():
            await release.wait()

        async def fails():
            raise RuntimeError("boom")

        keep(tasks, asyncio.get_running_loop().create_task(waits()))
        keep(tasks, asyncio.get_running_loop().create_task(fails()))
        gc.collect()
        held = await until(lambda: len(tasks) == 1 and len(tasks), what="the failing one to end")
        release.set()
        await until(lambda: not tasks, what="the waiting one to end")
        return held, len(tasks)

    with caplog.at_level(logging.ERROR, logger="sneakers23.tasks"):
        held, after = run_in_thread(run())
    assert (held, after) == (1, 0), "the waiting one held while it ran; both let go once they ended"
    assert "boom" in caplog.text


def test_work_in_turns_does_its_first_part_at_once_and_the_rest_a_part_a_turn_of_the_loop():
    async def scenario():
        done, between = [], []
        parts = InTurns(lambda: done.append(len(done)) or len(done) < 3)  # (three parts)
        parts.start()
        assert done == [0] and parts.running
        parts.start()  # (one at a time: nothing more now)
        assert done == [0]
        asyncio.get_running_loop().call_soon(lambda: between.append(list(done)))
        await until(lambda: not parts.running)
        assert done == [0, 1, 2] and between == [[0]]  # (the loop's other work went in between)

    run_in_thread(scenario())


def test_work_at_a_pace_waits_the_time_its_part_asks_for_between_parts():
    async def scenario():
        import time

        times: list[float] = []
        parts = InTurns(lambda: times.append(time.monotonic()) or (0.05 if len(times) < 3 else False))
        parts.start()
        assert len(times) == 1 and parts.running
        await until(lambda: not parts.running)
        assert len(times) == 3
        assert all(b - a >= 0.05 for a, b in zip(times, times[1:])), times  # (not a turn of the loop: the pace)

    run_in_thread(scenario())
