"""How the drop goes, second by second: pairs sold and shoppers refused (by reason), counted where
they happen and added up for the whole cluster (actors/activity.py) for the admin dashboard."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

WINDOW_S = 60


@dataclass(slots=True)
class Second:
    sold: int = 0
    refusals: Counter = field(default_factory=Counter)


Buckets = dict[int, tuple[int, dict[str, int]]]  # whole second (Unix time) -> (pairs sold, refusals by reason)


class Tally:
    """One process's counts since it last handed them on."""

    def __init__(self):
        self._seconds: dict[int, Second] = {}

    def sold(self, pairs: int, now: float) -> None:
        self._at(now).sold += pairs

    def refused(self, reason: str, now: float, count: int = 1) -> None:
        self._at(now).refusals[reason] += count

    def _at(self, now: float) -> Second:
        second = math.floor(now)
        held = self._seconds.get(second)
        if held is None:
            held = self._seconds[second] = Second()
        return held

    def take(self) -> Buckets:
        """The counts so far, as buckets; the tally starts again from nothing."""
        taken, self._seconds = self._seconds, {}
        return {second: (counts.sold, dict(counts.refusals)) for second, counts in taken.items()}


class ActivityWindow:
    """The cluster's counts for the last `WINDOW_S` seconds."""

    def __init__(self, seconds: int = WINDOW_S):
        self._window = seconds
        self._seconds: dict[int, Second] = {}

    def add(self, buckets: Buckets, now: float) -> None:
        oldest = math.floor(now) - 2 * self._window
        for second, (sold, refusals) in buckets.items():
            if second <= oldest:
                continue  # (a report held up for minutes: it is out of every window shown)
            held = self._seconds.setdefault(int(second), Second())
            held.sold += int(sold)
            held.refusals.update({str(reason): int(count) for reason, count in refusals.items()})
        for second in [s for s in self._seconds if s <= oldest]:
            del self._seconds[second]

    def last_minute(self, now: float) -> dict:
        """Pairs sold per second (oldest first, the current second last), and the refusals by reason,
        over the window."""
        newest = math.floor(now)
        seconds = range(newest - self._window + 1, newest + 1)
        refusals: Counter = Counter()
        for second in seconds:
            if second in self._seconds:
                refusals.update(self._seconds[second].refusals)
        sold = [self._seconds[s].sold if s in self._seconds else 0 for s in seconds]
        return {"window_s": self._window, "sold_per_second": sold, "sold": sum(sold),
                "refusals": dict(refusals.most_common())}
