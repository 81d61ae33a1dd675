"""Background tasks that are owned: asyncio keeps only weak references to tasks, so one created and
forgotten can be collected in the middle of its work."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger(__name__)


def keep(tasks: set, task: asyncio.Future) -> asyncio.Future:
    """Hold the task in `tasks` (its owner's set, which ends with it) until it ends, and log it if it fails."""
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(_log_failure)
    return task


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a background task failed: %r", task.exception())


class InTurns:
    """Work done a part at a time, so that no one callback holds the event loop: `part()` does one
    part and says whether more is waiting: True for the next turn of the loop, or a number of
    seconds (above 0: 0.0 says done) after which it is (work at a pace), False when done. `start()` does the first part at
    once, and the rest one part a turn of the loop (everything else the loop has to do goes in
    between), in a task of its own, one at a time."""

    def __init__(self, part: Callable[[], bool | float]):
        self._part = part
        self._rest: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def running(self) -> bool:
        """Whether parts are still waiting for their turns."""
        return self._rest is not None

    def start(self) -> None:
        if self._rest is None and (more := self._part()):
            self._rest = keep(self._tasks, asyncio.get_running_loop().create_task(self._parts(more)))

    async def _parts(self, more: bool | float) -> None:
        try:
            while more:
                await asyncio.sleep(0 if more is True else more)  # (a turn of the loop, or the pace's wait)
                more = self._part()
        finally:
            self._rest = None
