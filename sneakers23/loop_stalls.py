"""How long an event loop stops: a replica holding thousands of sockets answers none of them while
a callback runs long or the garbage collector sweeps every object it holds. Two measures, both
cheap: how late a short sleep wakes (any stall), and how long each full collection takes (the usual
cause at thousands of sockets). A pause made on purpose (the freezer's collection once a drop is
over) is timed apart: it is left out of both, so that they say what shoppers waited for unawares."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from contextlib import contextmanager, nullcontext

WAKE_EVERY_S = 0.02  # (50 wake-ups a second: a stall shorter than this is seen late by at most this)
WINDOW_S = 60.0  # the "recent" figures: the longest within the last minute


class LoopStalls:
    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self.longest_ms = 0.0  # since the start
        self.full_collections = 0
        self.longest_full_collection_ms = 0.0
        self._recent: deque[tuple[float, float]] = deque()  # (when, stall ms), the long ones of the window
        self._recent_gc: deque[tuple[float, float]] = deque()
        self._gc_started = 0.0
        self._recent_planned: deque[tuple[float, float]] = deque()  # (when, ms) of the pauses made on purpose
        self._planning = False
        # (start, end), monotonic, of the last pauses on purpose: the part of each that fell after
        # the watcher should have woken is taken off that late wake-up
        self._planned: deque[tuple[float, float]] = deque(maxlen=8)

    # --- the loop's stalls ---

    async def watch_forever(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(WAKE_EVERY_S)
            woken, due = time.monotonic(), asked + WAKE_EVERY_S
            planned = sum(max(0.0, min(end, woken) - max(start, due)) for start, end in self._planned)
            self.note(max(0.0, woken - due - planned) * 1000, woken)

    def note(self, stall_ms: float, now: float) -> None:
        self.longest_ms = max(self.longest_ms, stall_ms)
        _keep_longest(self._recent, now, stall_ms, self.window_s)

    @contextmanager
    def planned(self):
        """A pause made on purpose, on the loop (the freezer's collection once a drop is over):
        timed as such, and left out of the stalls and the full collections."""
        started = time.monotonic()
        self._planning = True
        try:
            yield
        finally:
            self._planning = False
            ended = time.monotonic()
            self._planned.append((started, ended))
            _keep_longest(self._recent_planned, ended, (ended - started) * 1000, self.window_s)

    # --- full collections (gc.callbacks: called by the collector itself, on its thread) ---

    def watch_collections(self) -> None:
        gc.callbacks.append(self._collecting)

    def stop_watching_collections(self) -> None:
        if self._collecting in gc.callbacks:
            gc.callbacks.remove(self._collecting)

    def _collecting(self, phase: str, info: dict) -> None:
        # (called by the collector, on whichever thread it runs: the deque is only appended to and
        # read as a copy)
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = 0.0 if self._planning else time.perf_counter()
            return
        if not self._gc_started:  # (a stop whose start came before the watching, or was planned)
            return
        took_ms = (time.perf_counter() - self._gc_started) * 1000
        self._gc_started = 0.0
        self.full_collections += 1
        self.longest_full_collection_ms = max(self.longest_full_collection_ms, took_ms)
        _keep_longest(self._recent_gc, time.monotonic(), took_ms, self.window_s)

    def figures(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        return {"loop_stall_ms": round(_longest_since(self._recent, now - self.window_s), 1),
                "loop_stall_ever_ms": round(self.longest_ms, 1),
                "full_collections": self.full_collections,
                "full_collection_ms": round(_longest_since(self._recent_gc, now - self.window_s), 1),
                "full_collection_ever_ms": round(self.longest_full_collection_ms, 1),
                "planned_pause_ms": round(_longest_since(self._recent_planned, now - self.window_s), 1)}


def _keep_longest(recent: deque, now: float, value: float, window_s: float) -> None:
    """Keep, for the window, only what may still be its longest: a value drops every shorter one
    before it (a monotonic queue), so the deque stays short however often it is fed."""
    while recent and recent[0][0] < now - window_s:
        recent.popleft()
    while recent and recent[-1][1] <= value:
        recent.pop()
    recent.append((now, value))


def _longest_since(recent: deque, since: float) -> float:
    for _attempt in range(5):  # (the collector's callback may append while it is copied, on any thread)
        try:
            held = tuple(recent)
            break
        except RuntimeError:
            continue
    else:
        return 0.0
    return max((value for at, value in held if at >= since), default=0.0)


# Objects made (less those freed) between two young collections: Python's 700 is a few pushes at
# 10,000 sockets. A queue's release makes about 20,000 lasting objects in one pass (each tab's
# place), and at 700 set off some thirty young collections and three of the middle generation in
# mid-pass, which freed nothing (0.41-0.44 s for the pass at 50,000, against 0.57-0.66; docs/performance.md).
YOUNG_COLLECTION_AFTER = 50_000


def collect_young_less_often() -> None:
    """A young collection each YOUNG_COLLECTION_AFTER objects made, in this process (the older
    generations' thresholds as they are)."""
    gc.set_threshold(YOUNG_COLLECTION_AFTER, *gc.get_threshold()[1:])


FREEZE_AFTER_NEW_SOCKETS = 200  # sockets opened since the last freeze, before the next
UNFREEZE_AFTER_CLOSED_SHARE = 0.5  # of the sockets open at the last freeze, closed since (and open now)
COLLECT_ANYWAY_AFTER_TURNOVERS = 4  # closed since the last full collection, in sockets open at the last freeze


class Freezer:
    """Keeps full collections short on a replica holding thousands of sockets: a socket's objects
    live as long as it does, yet every full collection walks them all (0.67-0.89 s at 1,500
    sockets, bench/rehearsal.py). Each time 200 sockets have opened since the last freeze: a young
    collection, then `gc.freeze()`, so later collections leave out what exists. Garbage frozen in
    a cycle (a closed socket's) waits until the drop is over: once half the sockets open at the
    last freeze have closed and fewer than half as many are open (or, in a long busy hour, once
    four times as many have closed), at least 200 of them, and no push is going out: everything
    is unfrozen, collected once (one long pause: once a drop is over, timed as a pause on purpose
    when the loop's `LoopStalls` is given) and frozen again (Serve's own start-up freeze with it).
    The turnovers are counted from the last full collection, across the freezes of new sockets."""

    def __init__(self, stalls: LoopStalls | None = None):
        self._stalls = stalls  # (told of its collection once a drop is over: a pause on purpose)
        self.open_at_freeze = 0
        self._opened_at_freeze = self._closed_at_freeze = 0
        self._closed_at_collect = 0  # (sockets closed by the last full collection, or the first freeze)
        self.freezes = self.refreezes = 0

    def check(self, opened: int, closed: int, busy: bool = False) -> None:
        """Called every second or so, with the sockets opened and closed since the start; `busy`
        while pushes are going out (no long pause then)."""
        # (the collection first: a churn of 200 new sockets at every check must not keep it off)
        if not busy and self.open_at_freeze and (why := self._time_to_collect(opened, closed)):
            # (once a drop is over, a pause on purpose; after turnovers in a busy hour, a stall like any other)
            with self._stalls.planned() if self._stalls is not None and why == "over" else nullcontext():
                gc.unfreeze()
                gc.collect()
                self._freeze(opened, closed)  # (the new sockets with it)
            self._closed_at_collect = closed
            self.refreezes += 1
        elif opened - self._opened_at_freeze >= FREEZE_AFTER_NEW_SOCKETS:
            gc.collect(1)  # (the young garbage goes first: frozen, it would wait)
            if not self.freezes:  # (what closed before the first freeze left no frozen garbage)
                self._closed_at_collect = closed
            self._freeze(opened, closed)
            self.freezes += 1

    def _time_to_collect(self, opened: int, closed: int) -> str | None:
        """"over": half the frozen sockets have closed since the last freeze and the replica holds
        fewer than half as many as then (a drop is over: the long pause hurts no one); "turnover":
        so many have closed since the last full collection (freezes in between: new sockets keep
        coming in a busy hour) that the frozen garbage must go anyway; None: not yet. Either takes
        at least 200 closed."""
        gone = closed - self._closed_at_freeze
        if (gone >= FREEZE_AFTER_NEW_SOCKETS and gone >= self.open_at_freeze * UNFREEZE_AFTER_CLOSED_SHARE
                and opened - closed < self.open_at_freeze * UNFREEZE_AFTER_CLOSED_SHARE):
            return "over"
        churned = closed - self._closed_at_collect  # (a few tabs coming and going: never a pause for them)
        if churned >= FREEZE_AFTER_NEW_SOCKETS and churned >= self.open_at_freeze * COLLECT_ANYWAY_AFTER_TURNOVERS:
            return "turnover"
        return None

    def _freeze(self, opened: int, closed: int) -> None:
        gc.freeze()
        self._opened_at_freeze, self._closed_at_freeze = opened, closed
        self.open_at_freeze = opened - closed
