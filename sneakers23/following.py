"""Following from a cursor, written once: the node caches' feed of changes (actors/node_cache.py)
and the presence board (actors/presence.py) are followed the same way.

- `Bell` and `read_when_news`: the side followed. A follower's read is answered at once when there
  is news after its cursor, else as soon as some comes, or with nothing when its wait runs out.
- `follow`: the follower. It asks for what comes after its (epoch, cursor), hands each answer on,
  and asks again from where that answer left it, until an error ends it (its caller decides how to
  start again: from a snapshot).
- `KeptDuringLoad`: a reload that keeps what arrives meanwhile, to apply on top of what it loaded
  (the load may have read the rows before those changes committed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, TypeVar

Read = TypeVar("Read")
Loaded = TypeVar("Loaded")
Item = TypeVar("Item")


class Bell:
    """Wakes every follower waiting for news, at once."""

    def __init__(self):
        self._event = asyncio.Event()  # replaced by a new one each time it rings

    def ring(self) -> None:
        rung, self._event = self._event, asyncio.Event()
        rung.set()

    async def read_when_news(self, read: Callable[[], Read], news: Callable[[Read], bool], timeout_s: float) -> Read:
        """`read()` now; when it brings no news, again each time the bell rings, until it does or
        timeout_s has passed (then the last read)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rung = self._event  # (taken before reading: news that comes after the read rings it)
            answer = read()
            left = deadline - time.monotonic()
            if news(answer) or left <= 0:
                return answer
            try:
                await asyncio.wait_for(rung.wait(), left)
            except asyncio.TimeoutError:
                pass


async def follow(read_after: Callable[[str, int], Awaitable[Read]], take: Callable[[Read], tuple[str, int]],
                 epoch: str, cursor: int) -> None:
    """Forever: what comes after (epoch, cursor), handed to `take`, which says where it left off.
    Returns only by an error (raised to the caller)."""
    while True:
        epoch, cursor = take(await read_after(epoch, cursor))


class KeptDuringLoad(Generic[Item]):
    """What arrives while a load runs, kept to be applied on top of it."""

    def __init__(self):
        self._arrived: list[Item] | None = None

    @property
    def loading(self) -> bool:
        return self._arrived is not None

    def note(self, items) -> None:
        if self._arrived is not None:
            self._arrived.extend(items)

    async def load(self, load: Callable[[], Awaitable[Loaded]]) -> tuple[Loaded, list[Item]]:
        """What `load()` returns, and what arrived while it ran, in order."""
        self._arrived = []
        try:
            loaded = await load()
        finally:
            arrived, self._arrived = self._arrived, None
        return loaded, arrived
