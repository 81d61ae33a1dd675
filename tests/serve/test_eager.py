"""Starting a coroutine at once and finishing it as a task only if it has to wait."""

from __future__ import annotations

import asyncio

import pytest

from sneakers23.serve import eager
from tests.support import aio


def test_a_coroutine_that_never_waits_runs_to_its_end_on_the_spot():
    done = []

    async def send():
        done.append("sent")

    async def scenario():
        assert eager.start(send()) is eager.DONE
        assert done == ["sent"]  # before the loop turned

    aio.run(scenario())


def test_one_that_waits_is_finished_once_what_it_waits_for_is_done():
    steps = []

    async def send(gate: asyncio.Future, bare_yields: int):
        steps.append("started")
        steps.append(await gate)
        for _ in range(bare_yields):
            await asyncio.sleep(0)  # a bare yield
        steps.append("ended")

    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        coroutine = send(gate, 2)
        waiting = eager.start(coroutine)
        assert waiting is gate and steps == ["started"]
        finishing = asyncio.get_running_loop().create_task(eager.finish(coroutine, waiting))
        for _ in range(5):  # (loop turns, not time: the finish runs, and waits on the gate)
            await asyncio.sleep(0)
        assert steps == ["started"] and not finishing.done()
        gate.set_result("opened")
        await asyncio.wait_for(finishing, 1)
        assert steps == ["started", "opened", "ended"]

    aio.run(scenario())


def test_errors_come_out_where_they_happen_and_a_failed_future_is_raised_inside():
    async def fails_at_once():
        raise ConnectionError("gone")

    async def fails_later(gate):
        try:
            await gate
        except KeyError:
            raise ConnectionError("gone while waiting") from None

    async def scenario():
        with pytest.raises(ConnectionError, match="gone"):
            eager.start(fails_at_once())
        gate = asyncio.get_running_loop().create_future()
        coroutine = fails_later(gate)
        waiting = eager.start(coroutine)
        gate.set_exception(KeyError("no"))
        with pytest.raises(ConnectionError, match="gone while waiting"):
            await eager.finish(coroutine, waiting)

    aio.run(scenario())


def test_cancelling_the_finish_cancels_what_it_waits_on_and_the_coroutine_sees_it():
    cleaned = []

    async def send(gate):
        try:
            await gate
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            cleaned.append("cleaned")

    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        coroutine = send(gate)
        finishing = asyncio.get_running_loop().create_task(eager.finish(coroutine, eager.start(coroutine)))
        await asyncio.sleep(0)  # (one loop turn: the finish is waiting on the gate)
        finishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await finishing
        assert cleaned == ["cancelled", "cleaned"] and gate.cancelled()

    aio.run(scenario())


def test_a_yield_that_is_not_a_future_is_an_error_inside_the_coroutine():
    class Odd:
        def __await__(self):
            yield 42

    async def send():
        await Odd()

    async def scenario():
        coroutine = send()
        waiting = eager.start(coroutine)
        assert waiting == 42
        with pytest.raises(RuntimeError, match="bad yield"):
            await eager.finish(coroutine, waiting)

    aio.run(scenario())
