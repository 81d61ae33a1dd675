"""A queue channel replica's tabs and their places (serve/queue.py): which places the database has
news of when the line moves, asked of one place (`news_in_the_database`), or found among a
product's tabs at once (`TabPlaces.with_news`) without a look at each of them; and which tabs are
due a new position (`LastTold`), also without a look at each.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from typing import Iterator

from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.waiting_room import LinePlace, Stage


class TabPlaces:
    """A product's joined sockets and their places, those numbered in line indexed by number: the
    tabs whose place the database has news of at a move of the line (`with_news`) are found without
    a look at each of 10,000 tabs (two such looks a move: 3.1 ms, against 0.06; about 0.01 of a core
    while letting in, docs/performance.md)."""

    def __init__(self) -> None:
        self._places: dict[object, LinePlace] = {}
        self._numbered: dict[int, set] = {}  # a number in line -> the sockets whose place has it
        self._numbers: list[int] = []  # a heap of those numbers (one gone since is skipped when met)
        self._others: set = set()  # the sockets whose place has no number in line (pre-queue, let in, …)

    def __len__(self) -> int:
        return len(self._places)

    def __iter__(self) -> Iterator:
        return iter(self._places)

    def get(self, connection, default: LinePlace | None = None) -> LinePlace | None:
        return self._places.get(connection, default)

    def values(self):
        return self._places.values()

    def __setitem__(self, connection, place: LinePlace) -> None:
        self.pop(connection)
        self._places[connection] = place
        if place.stage is Stage.QUEUE and place.number is not None:
            if place.number not in self._numbered:
                self._numbered[place.number] = set()
                heapq.heappush(self._numbers, place.number)
                if len(self._numbers) > 2 * len(self._numbered) + 64:  # (tabs leaving and joining again)
                    self._numbers = list(self._numbered)
                    heapq.heapify(self._numbers)
            self._numbered[place.number].add(connection)
        else:
            self._others.add(connection)

    def pop(self, connection, default: LinePlace | None = None) -> LinePlace | None:
        place = self._places.pop(connection, None)
        if place is None:
            return default
        sockets = self._numbered.get(place.number) if place.stage is Stage.QUEUE else None
        if sockets is not None:
            sockets.discard(connection)
            if not sockets:
                del self._numbered[place.number]  # (its number leaves the heap when the head passes it)
        self._others.discard(connection)
        return place

    def with_news(self, line: WaitingLine, turns: bool = False) -> set:
        """The sockets whose place the line says the database has news of (`news_in_the_database`),
        and with `turns` those let in too: the numbered ones from the heap's numbers below the
        line's head and the numbers taken out, the others one by one (a few, once the line opened)."""
        found = {connection for connection in self._others
                 if news_in_the_database(place := self._places[connection], line)
                 or (turns and place.stage is Stage.ADMITTED)}
        passed = set()
        while self._numbers and self._numbers[0] < line.head:
            number = heapq.heappop(self._numbers)
            if number in self._numbered:
                passed.add(number)
        for number in passed:  # (numbered still, until read again: met again at the next move)
            heapq.heappush(self._numbers, number)
        for number in passed.union(line.left):
            found.update(self._numbered.get(number, ()))
        return found


def news_in_the_database(place: LinePlace, line: WaitingLine) -> bool:
    """Whether the line says this place changed in a way only the database can tell: shuffled into
    the line (its number), let in (until when), or its turn past its end."""
    if place.stage is Stage.QUEUE:  # (the most of them: a few steps, asked of every tab at every move)
        number = place.number
        return number is None or number < line.head or (bool(line.left) and number in line.left)
    if place.stage is Stage.PRE_QUEUE:
        return line.opened
    if place.stage is Stage.ADMITTED:
        return place.until is not None and place.until <= time.time()
    return False


class LastTold:
    """A product's tabs by when they were last told their place (a push, or a look that found
    nothing new to push), those told longest ago first: the tabs due a new position are found at the
    front, without a look at the others. Tabs are told in time order (a deque), but for a pass's
    share of its spread, dated earlier (a heap beside it). Each tab's time is kept; an entry older
    than its tab's time (told again since) is dropped when it is met."""

    def __init__(self) -> None:
        self._at: dict[object, float] = {}  # each tab's last time told (monotonic)
        self._order: deque[tuple[float, object]] = deque()  # (time, tab), in time order
        self._earlier: list[tuple[float, int, object]] = []  # a heap of (time, a count to break ties, tab)
        self._count = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def told(self, connection, at: float) -> None:
        self._at[connection] = at
        if not self._order or at >= self._order[-1][0]:
            self._order.append((at, connection))
        else:
            heapq.heappush(self._earlier, (at, next(self._count), connection))
        if len(self._order) + len(self._earlier) > 2 * len(self._at) + 64:  # (told again and again: old entries dropped)
            self._order = deque(sorted(((when, tab) for tab, when in self._at.items()), key=_time))
            self._earlier = []

    def forget(self, connection) -> None:
        self._at.pop(connection, None)

    def due(self, told_by: float, most: int) -> list[tuple[float, object]]:
        """The tabs last told at `told_by` or before, the longest ago first, `most` at most, each
        with its time. They are taken out until told again (`told`: the caller tells each one, or
        lets it go)."""
        found = []
        while len(found) < most:
            if self._earlier and (not self._order or self._earlier[0][0] < self._order[0][0]):
                at, _n, connection = self._earlier[0]
                if at > told_by:
                    break
                heapq.heappop(self._earlier)
            elif self._order and self._order[0][0] <= told_by:
                at, connection = self._order.popleft()
            else:
                break
            if self._at.get(connection) == at:
                del self._at[connection]
                found.append((at, connection))
        return found


def _time(entry: tuple) -> float:
    return entry[0]
