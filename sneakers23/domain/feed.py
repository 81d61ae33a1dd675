"""A cache's feed of applied changes, read by followers from a cursor.

Every change a cache applies gets the next sequence number of the cache's current epoch. A follower
remembers (epoch, cursor) and asks for what came after: it gets each change exactly once, in the
order the cache applied it. When it cannot (the cache restarted or reloaded, so the epoch is new, or
the follower fell further behind than the feed keeps), it is told to start again from a snapshot.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from sneakers23.domain.changes import Change

DEFAULT_CAPACITY = 50_000


@dataclass(frozen=True, slots=True)
class FeedRead:
    epoch: str
    cursor: int  # pass it back to read what comes next
    changes: tuple[Change, ...] = ()
    reset: bool = False  # the follower must start again from a snapshot taken at `cursor`


class ChangeFeed:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.epoch = uuid.uuid4().hex
        self._entries: deque[Change] = deque(maxlen=capacity)
        self._last = 0  # sequence number of the newest entry; entries hold _last-len+1 … _last

    @property
    def cursor(self) -> int:
        return self._last

    def append(self, change: Change) -> int:
        self._entries.append(change)
        self._last += 1
        return self._last

    def new_epoch(self) -> None:
        """Everything before is void (the cache reloaded): followers must take a snapshot."""
        self.epoch = uuid.uuid4().hex
        self._entries.clear()
        self._last = 0

    def read(self, epoch: str, cursor: int) -> FeedRead:
        oldest = self._last - len(self._entries)  # entries strictly after this are kept
        if epoch != self.epoch or cursor < oldest or cursor > self._last:
            return FeedRead(self.epoch, self._last, reset=True)
        if cursor == self._last:
            return FeedRead(self.epoch, cursor)
        start = cursor - oldest
        changes = tuple(self._entries[i] for i in range(start, len(self._entries)))
        return FeedRead(self.epoch, self._last, changes)
