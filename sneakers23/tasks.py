"""Background tasks that are owned: asyncio keeps only weak references to tasks, so one created and
forgotten can be collected in the middle of its work."""

from __future__ import annotations

import asyncio
import logging

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
