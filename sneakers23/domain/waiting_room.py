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
from dataclasses import dataclass, replace
from enum import StrEnum

from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import Removed, ShuffleRecord, draw


class Stage(StrEnum):
    PRE_QUEUE = "pre_queue"  # before the release: every place is as good as another
    QUEUE = "queue"  # after it: in line
    ADMITTED = "admitted"  # may buy, until its window ends
    BOUGHT = "bought"
    EXPIRED = "expired"  # its window passed unused
    REMOVED = "removed"  # taken out by the staff (a locked account)


STAGES = tuple(Stage)


class JoinRefusal(StrEnum):
    NOT_A_QUEUE = "not_a_queue"
    NOT_SCHEDULED = "not_scheduled"
    SIGN_IN_REQUIRED = "sign_in_required"
    ACCOUNT_LOCKED = "account_locked"


def join_refused(product_id: int, mode: DropMode, scheduled: bool, released: bool,
                 signed_in: bool, locked: bool) -> tuple[JoinRefusal, str] | None:
    """Why a shopper may not take a place in the product's waiting room, if they may not: it must
    be sold by queue, its release scheduled (or made), and the shopper one account, signed in, and
    not locked by the staff."""
    if mode is not DropMode.QUEUE:
        return JoinRefusal.NOT_A_QUEUE, f"product {product_id} is not sold through a queue"
    if not (scheduled or released):
        return JoinRefusal.NOT_SCHEDULED, f"product {product_id}'s queue opens once its release time is set"
    if not signed_in:
        return JoinRefusal.SIGN_IN_REQUIRED, SIGN_IN_TO_QUEUE
    if locked:
        return JoinRefusal.ACCOUNT_LOCKED, "this account is locked: write to the shop's staff"
    return None


SIGN_IN_TO_QUEUE = "a place in the queue is one per person: sign in with a confirmed email address to take yours"


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


@dataclass(frozen=True)
class LinePlace:
    """One account's place as the database keeps it (db/waiting_rooms.py): the keeper's room is
    rebuilt from these after a restart, so nobody loses a place and nobody is let in twice."""

    account: str
    entry: str
    stage: Stage
    number: int | None = None  # in line (None: before the release, or not numbered yet)
    until: float | None = None  # an admission's end (seconds since the epoch)


def place_in_line(entry: str, number: int, line: WaitingLine) -> Place | None:
    """A place in line as the line's summary shows it to its tab; None once the line's head passed
    it (it was let in, or taken out: the database says which, and until when)."""
    ahead = _ahead(number, line)
    if ahead is None:
        return None
    return Place(entry, Stage.QUEUE, position=ahead + 1, ahead=ahead, wait_s=_wait_s(ahead, line),
                 sold_out=line.sold_out)


def _ahead(number: int, line: WaitingLine) -> int | None:
    """How many are in line before this number; None once the head passed it."""
    gone_before = bisect.bisect_left(line.left, number)
    if number < line.head or line.left[gone_before:gone_before + 1] == (number,):
        return None
    return number - line.head - gone_before


def _wait_s(ahead: int, line: WaitingLine) -> float | None:
    return None if line.sold_out or line.pace_per_minute == 0 else (ahead + 1) * 60.0 / line.pace_per_minute


def turns_ended(before: WaitingLine, after: WaitingLine) -> bool:
    """Whether a live turn may have ended between two lines of a room (used, ended unused, or taken
    out with its locked account), as their counts show; only then does a channel replica read its
    tabs' live turns again. Live turns grow by at most the numbers the head passed, less those
    taken out among them: fewer than that, and one ended. (True when in doubt: a read too many.)"""
    live, used, ended = before.turns
    live_now, used_now, ended_now = after.turns
    if (used_now, ended_now) != (used, ended) or after.head < before.head:
        return True
    passed = after.head - before.head - sum(1 for number in before.left if number < after.head)
    return live_now < live + passed


def numbers_at_the_opening(record: ShuffleRecord) -> dict[str, int]:
    """Each pre-queue entry's number in line once the release shuffled it: its place in the
    shuffle (nobody is numbered before the release; those who come after go behind). The keeper
    numbers the line from it, and a channel replica tells its tabs their positions from it, with
    no read of 10,000 places at the release."""
    return {entry: number for number, entry in enumerate(record.order)}


def default_pace(pairs_left: int, engine_per_minute: float) -> float:
    """The pace when the staff set none: every pair left offered within a minute, never faster than
    the drop engine sells (a shopper let in while the pairs are all held waits for nothing)."""
    return float(min(engine_per_minute, max(1, pairs_left)))


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

    @classmethod
    def restore(cls, seed: bytes, pace_per_minute: float, window_s: float, pairs_each: int,
                places: list[LinePlace], record: ShuffleRecord | None, opened_at: float | None) -> "WaitingRoom":
        """The room as the database kept it, `places` in arrival order. A place let into the line
        after the release but not numbered yet is left out: the caller joins it again, as new."""
        room = cls(seed, pace_per_minute, window_s, pairs_each)
        room.record, room.opened_at = record, opened_at
        room._paced_at = opened_at or 0.0
        numbered = []
        for place in places:
            if place.stage is Stage.QUEUE and place.number is None:
                continue
            room._entries[place.account] = place.entry
            room._taken.add(place.entry)
            room._stage[place.account] = place.stage
            if place.number is not None:
                room._number[place.account] = place.number
                numbered.append(place)
            if place.stage is Stage.PRE_QUEUE:
                room._pre_queue.append(place.account)
            elif place.stage is Stage.ADMITTED:
                room._until[place.account] = place.until
            elif place.stage is Stage.REMOVED and place.number is None:
                room._removed_before.append(Removed(place.entry, "account locked"))
        numbered.sort(key=lambda place: place.number)
        # (those taken out of the line stay in it, skipped when they come to its head, as in a room
        # that never stopped)
        room._line = deque(place.account for place in numbered if place.stage in (Stage.QUEUE, Stage.REMOVED))
        room._left = [place.number for place in numbered if place.stage is Stage.REMOVED]
        room._next_number = numbered[-1].number + 1 if numbered else 0
        return room

    def go_on_pacing_from(self, before: "WaitingRoom") -> None:
        """Take over the pace's allowance of the room this one was read again for (a lock moved
        it), so that a reading lets nobody in ahead of the pace."""
        self._tokens, self._paced_at = before._tokens, before._paced_at

    def number(self, account: str) -> int | None:
        return self._number.get(account)

    def until(self, account: str) -> float | None:
        return self._until.get(account)

    def line(self, product_id: int = 0, version: int = 0) -> WaitingLine:
        """The line's summary that every tab shows its place from (`place_in_line`), with the
        figures the staff see."""
        where = self._where()
        stages = self.counts()
        return replace(where, product_id=product_id, version=version,
                       waiting=len(self._pre_queue) + len(self._line) - len(where.left),
                       turns=(stages[Stage.ADMITTED], stages[Stage.BOUGHT], stages[Stage.EXPIRED]))

    def _where(self) -> WaitingLine:
        """Where the line stands (its head, those taken out past it), without the figures: a
        place is told from it in a few steps, however long the line."""
        head_account = self._next_in_line()
        head = self._number[head_account] if head_account is not None else self._next_number
        left = tuple(self._left[bisect.bisect_left(self._left, head):])
        return WaitingLine(0, 0, self.opened_at is not None, head, left, self.pace_per_minute, self.sold_out)

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

    def _enter_line(self, account: str, number: int | None = None) -> None:
        number = self._next_number if number is None else number
        self._line.append(account)
        self._number[account] = number
        self._next_number = number + 1
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
        for entry, number in numbers_at_the_opening(self.record).items():  # (in the shuffle's order)
            self._enter_line(by_entry[entry], number)
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
        """The admitted shopper bought: its hold ends (its pairs are sold: the stock says so now).
        (Also one that `tick` found expired, whose purchase came just before its window's end.)"""
        if self._until.pop(account, None) is not None or self._stage.get(account) is Stage.EXPIRED:
            self._stage[account] = Stage.BOUGHT

    def admitted(self) -> list[str]:
        """The accounts with a live admission."""
        return list(self._until)

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
            return place_in_line(entry, self._number[account], self._where())
        if stage is Stage.ADMITTED:
            return Place(entry, stage, until=self._until[account])
        return Place(entry, stage, sold_out=self.sold_out and stage is Stage.PRE_QUEUE)

    def pre_queue_size(self) -> int:
        return len(self._pre_queue)

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


def place_view(place: LinePlace | None, line: WaitingLine | None, now: float | None = None) -> dict | None:
    """A shopper's place as the page shows it (JSON): where it stands, from the line's summary
    (`moving` when the line's head passed it: the database has its news), or its turn and when
    it ends."""
    if place is None:
        return None
    if place.stage is Stage.QUEUE:  # (most tabs, at every pass: one dict, no Place made)
        ahead = None if line is None or place.number is None else _ahead(place.number, line)
        if ahead is None:
            return {"entry": place.entry, "stage": Stage.QUEUE.value, "moving": True}
        return {"entry": place.entry, "stage": Stage.QUEUE.value, "position": ahead + 1, "ahead": ahead,
                "wait_s": _wait_s(ahead, line), "sold_out": line.sold_out}
    view: dict = {"entry": place.entry, "stage": str(place.stage)}
    if place.stage is Stage.PRE_QUEUE:
        view.update(waiting=None if line is None else line.waiting, sold_out=bool(line and line.sold_out))
    elif place.stage is Stage.ADMITTED:
        view["until"] = place.until
        if now is not None and place.until is not None:
            view["left_s"] = max(0.0, place.until - now)
    return view
