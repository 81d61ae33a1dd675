"""Trying again, one way everywhere: exponential backoff with full jitter (tenacity), so that many
processes that failed together (every node's followers when a cache restarts, every actor when the
database comes back) do not all try again at the same moment."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, TypeVar

from tenacity import (RetryCallState, Retrying, retry_if_exception, retry_if_exception_type, stop_after_attempt,
                      wait_random_exponential)

from sneakers23.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff(first_s: float, longest_s: float) -> wait_random_exponential:
    """A wait drawn at random up to first_s, 2·first_s, 4·first_s, … and at most longest_s."""
    return wait_random_exponential(multiplier=first_s, max=longest_s)


async def pause(longest_s: float) -> None:
    """A wait drawn at random up to longest_s: the first step of a backoff, before trying again."""
    await asyncio.sleep(random.uniform(0, longest_s))


def patiently(work: Callable[[], T], what: str, retry_on: tuple[type[BaseException], ...] = (DatabaseUnavailable,),
              first_delay_s: float = 0.5, longest_delay_s: float = 10.0) -> T:
    """work(), tried again while it fails with `retry_on` (the database is away): for an actor's
    constructor, which is not restarted when it fails, and without which its node or product
    cannot serve."""
    def said(state: RetryCallState) -> None:
        log.warning("%s: cannot load from the database (%s); again in %.1fs", what,
                    state.outcome.exception(), state.upcoming_sleep)

    retrying = Retrying(retry=retry_if_exception_type(retry_on), wait=backoff(first_delay_s, longest_delay_s),
                        before_sleep=said, reraise=True)
    return retrying(work)


DEADLOCK = "40P01"  # PostgreSQL's SQLSTATE for "deadlock detected"


def _deadlocked(error: BaseException) -> bool:
    return getattr(getattr(error, "orig", None), "sqlstate", None) == DEADLOCK


def again_if_deadlocked(work: Callable[[], T], attempts: int = 5) -> T:
    """work() (a transaction), tried again when PostgreSQL chose it as a deadlock's victim: a
    transaction that locks whole tables (a reseed) can meet the readers and writers that a running
    store always has under way, in another order."""
    retrying = Retrying(retry=retry_if_exception(_deadlocked), stop=stop_after_attempt(attempts),
                        wait=backoff(0.05, 1.0), reraise=True)
    return retrying(work)
