"""A queued drop's waiting room, as rules: who waits where, who is let in when, and when waiting is
pointless. Pure: the caller gives the time and the pairs left; nothing here reads a clock or the
stock, so every rule is tested in milliseconds (tests/domain/test_waiting_room.py).

- Before the release, accounts join a pre-queue: one place each (a second tab or device finds the
  same). At the release, the pre-queue is shuffled (domain/fairness.py: the order anyone can check),
  and later arrivals queue behind it, first come, first served.
- Admission runs at a pace (shoppers a minute, changeable live): the pace's tokens accrue with time
  (at most a second's worth saved up), and each lets the next in line in, while the pairs left
  exceed the pairs that live admissions hold. An admission holds `pairs_each` pairs for `window_s`:
  bought, it is done; unused, it expires and gives its pairs back.
- When the pairs left, less those held, reach zero, the room is sold out: everyone waiting is told
  so at once, and it lets nobody in until pairs come back (an expiry, a restock). Places are kept.
- A place in line is a number: the line's head moves on, and a shopper's position is its number
  less the head's, less those who left from in front (counted by bisection), so that telling
  10,000 waiting shoppers their positions costs one pass, not 10,000 searches.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from enum import Enum

from sneakers23.domain.fairness import Removed, ShuffleRecord, draw


class Stage(str, Enum):
    PRE_QUEUE = "pre_queue"  # before the release: every place is as good as another
    QUEUE = "queue"  # after it: in line
    ADMITTED = "admitted"  # may buy, until its window ends
    BOUGHT = "bought"
    EXPIRED = "expired"  # its window passed unused
    REMOVED = "removed"  # taken out by the staff (a locked account)


@dataclass(frozen=True)
class Place:
    """What one shopper's tabs show."""

    entry: str
    stage: Stage
    position: int | None = None  # 1 for the next to be let in
    ahead: int | None = None
    wait_s: float | None = None  # at the present pace; None when nobody is let in now
    until: float | None = None  # when an admission ends
    sold_out: bool = False  # nothing left for anyone waiting (for now)


class WaitingRoom:
    def __init__(self, seed: bytes, pace_per_minute: float, window_s: float = 300.0, pairs_each: int = 1):
        if pace_per_minute < 0 or window_s <= 0 or pairs_each < 1:
            raise ValueError("a waiting room's pace is at least 0, its window more than 0 s, its hold at least 1 pair")
        self._seed = seed
        self.pace_per_minute = pace_per_minute
        self.window_s = window_s
        self.pairs_each = pairs_each
        self._entries: dict[str, str] = {}  # account -> its entry id (opaque, shown to its shopper)
        self._taken: set[str] = set()  # the entry ids given out
        self._stage: dict[str, Stage] = {}
        self._pre_queue: list[str] = []  # accounts, in arrival order (which the shuffle ignores)
        self._removed_before: list[Removed] = []
        self._line: deque[str] = deque()  # accounts in line, next first (some may have left: skipped)
        self._number: dict[str, int] = {}  # an account's number in line
        self._next_number = 0
        self._left: list[int] = []  # numbers of those who left the line from the middle, sorted
        self._until: dict[str, float] = {}  # live admissions' ends
        self.record: ShuffleRecord | None = None  # the shuffle, published once open
        self.opened_at: float | None = None
        self._tokens = 0.0
        self._paced_at = 0.0
        self.sold_out = False

    # --- joining and leaving ---

    def join(self, account: str, entry: str) -> str:
        """The account's entry id: the one it has when it already holds a place (a second tab, a
        device, a return after it bought or let its turn pass: one place per account)."""
        if account in self._entries:
            return self._entries[account]
        if entry in self._taken:
            raise ValueError("that entry id is another account's")
        self._entries[account] = entry
        self._taken.add(entry)
        if self.opened_at is None:
            self._pre_queue.append(account)
            self._stage[account] = Stage.PRE_QUEUE
        else:
            self._enter_line(account)
        return entry

    def _enter_line(self, account: str) -> None:
        self._line.append(account)
        self._number[account] = self._next_number
        self._next_number += 1
        self._stage[account] = Stage.QUEUE

    def remove(self, account: str) -> bool:
        """The staff take an account out (locked): before the release, its entry is listed among the
        shuffle's removed, with why; after, it leaves the line or its admission. True when it had
        a place to lose."""
        stage = self._stage.get(account)
        if stage is Stage.PRE_QUEUE:
            self._pre_queue.remove(account)
            self._removed_before.append(Removed(self._entries[account], "account locked"))
        elif stage is Stage.QUEUE:
            bisect.insort(self._left, self._number[account])
        elif stage is Stage.ADMITTED:
            del self._until[account]
        else:
            return False
        self._stage[account] = Stage.REMOVED
        return True

    # --- the release ---

    def open(self, now: float) -> ShuffleRecord:
        """At the release: the pre-queue, shuffled, goes first in line."""
        if self.opened_at is not None:
            raise ValueError("the waiting room is open already")
        by_entry = {self._entries[account]: account for account in self._pre_queue}
        self.record = draw(self._seed, [*by_entry, *(r.entry for r in self._removed_before)], self._removed_before)
        for entry in self.record.order:
            self._enter_line(by_entry[entry])
        self._pre_queue = []
        self.opened_at = self._paced_at = now
        return self.record

    # --- letting in ---

    def held(self) -> int:
        """Pairs held by live admissions (as of the last `tick`)."""
        return len(self._until) * self.pairs_each

    def tick(self, now: float, pairs_left: int) -> tuple[list[str], list[str]]:
        """Move time on to `now`, with `pairs_left` in stock: end the admissions whose window passed,
        let in what the pace and the stock allow. Returns (accounts let in, accounts expired)."""
        expired = [account for account, until in self._until.items() if until <= now]
        for account in expired:
            del self._until[account]
            self._stage[account] = Stage.EXPIRED
        admitted: list[str] = []
        if self.opened_at is not None:
            self._tokens = min(self._tokens + max(0.0, now - self._paced_at) * self.pace_per_minute / 60.0,
                               max(1.0, self.pace_per_minute / 60.0))
            self._paced_at = now
            while self._tokens >= 1.0 and pairs_left - self.held() > 0 and (account := self._next_in_line()):
                self._line.popleft()
                self._until[account] = now + self.window_s
                self._stage[account] = Stage.ADMITTED
                self._tokens -= 1.0
                admitted.append(account)
        self.sold_out = pairs_left - self.held() <= 0
        return admitted, expired

    def _next_in_line(self) -> str | None:
        while self._line and self._stage[self._line[0]] is not Stage.QUEUE:
            self._line.popleft()  # (left from the middle earlier)
        return self._line[0] if self._line else None

    def bought(self, account: str) -> None:
        """The admitted shopper bought: its hold ends (its pairs are sold: the stock says so now)."""
        if self._until.pop(account, None) is not None:
            self._stage[account] = Stage.BOUGHT

    def may_buy(self, account: str, now: float) -> bool:
        """A live admission: the only way to buy a queued drop."""
        until = self._until.get(account)
        return until is not None and until > now

    # --- what the shoppers see ---

    def place(self, account: str) -> Place | None:
        stage = self._stage.get(account)
        if stage is None:
            return None
        entry = self._entries[account]
        if stage is Stage.QUEUE:
            head = self._line[0] if self._next_in_line() else account
            first = self._number[head]
            number = self._number[account]
            ahead = number - first - (bisect.bisect_left(self._left, number) - bisect.bisect_left(self._left, first))
            wait = None if self.sold_out or self.pace_per_minute == 0 else (ahead + 1) * 60.0 / self.pace_per_minute
            return Place(entry, stage, position=ahead + 1, ahead=ahead, wait_s=wait, sold_out=self.sold_out)
        if stage is Stage.ADMITTED:
            return Place(entry, stage, until=self._until[account])
        return Place(entry, stage, sold_out=self.sold_out and stage is Stage.PRE_QUEUE)

    def waiting(self) -> list[str]:
        """Every account still waiting (pre-queue, then the line in order): whom a sell-out or a
        position update is told to."""
        return [*self._pre_queue, *(a for a in self._line if self._stage[a] is Stage.QUEUE)]

    def counts(self) -> dict[str, int]:
        """For the staff's dashboard: how many at each stage, and the pairs held."""
        counted = {stage.value: 0 for stage in Stage}
        for stage in self._stage.values():
            counted[stage.value] += 1
        return {**counted, "held": self.held()}
