"""Wait for a condition, with a bound: never a fixed sleep. The one polling helper of the tests and
the benchmarks (`wait_for` in a thread, `until` on an event loop)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class NotYet(dict):
    """What was seen when a condition did not hold yet: false, and shown by `wait_for` if it times out."""

    def __bool__(self) -> bool:
        return False


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: last {last!r}")
        time.sleep(interval)


async def until(condition: Callable[[], T], timeout: float = 5.0, interval: float = 0.005, what: str = "") -> T:
    """`wait_for` on an event loop: the loop runs meanwhile (interval 0: a bare yield each time)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: last {last!r}")
        await asyncio.sleep(interval)
