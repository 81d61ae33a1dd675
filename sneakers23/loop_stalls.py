"""How long an event loop stops: a replica holding thousands of sockets answers none of them while
a callback runs long or the garbage collector sweeps every object it holds. Two measures, both
cheap: how late a short sleep wakes (any stall), and how long each full collection takes (the usual
cause at thousands of sockets)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque

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

    # --- the loop's stalls ---

    async def watch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(WAKE_EVERY_S)
            self.note((loop.time() - asked - WAKE_EVERY_S) * 1000, time.monotonic())

    def note(self, stall_ms: float, now: float) -> None:
        self.longest_ms = max(self.longest_ms, stall_ms)
        _keep_longest(self._recent, now, stall_ms, self.window_s)

    # --- full collections (gc.callbacks: called by the collector itself, on its thread) ---

    def watch_collections(self) -> None:
        gc.callbacks.append(self._collecting)

    def stop_watching_collections(self) -> None:
        if self._collecting in gc.callbacks:
            gc.callbacks.remove(self._collecting)

    def _collecting(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took_ms = (time.perf_counter() - self._gc_started) * 1000
        self.full_collections += 1
        self.longest_full_collection_ms = max(self.longest_full_collection_ms, took_ms)
        _keep_longest(self._recent_gc, time.monotonic(), took_ms, self.window_s)

    def figures(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        return {"loop_stall_ms": round(_longest_since(self._recent, now - self.window_s), 1),
                "loop_stall_ever_ms": round(self.longest_ms, 1),
                "full_collections": self.full_collections,
                "full_collection_ms": round(_longest_since(self._recent_gc, now - self.window_s), 1),
                "full_collection_ever_ms": round(self.longest_full_collection_ms, 1)}


def _keep_longest(recent: deque, now: float, value: float, window_s: float) -> None:
    """Keep, for the window, only what may still be its longest: a value drops every shorter one
    before it (a monotonic queue), so the deque stays short however often it is fed."""
    while recent and recent[0][0] < now - window_s:
        recent.popleft()
    while recent and recent[-1][1] <= value:
        recent.pop()
    recent.append((now, value))


def _longest_since(recent: deque, since: float) -> float:
    return max((value for at, value in recent if at >= since), default=0.0)


FREEZE_AFTER_NEW_SOCKETS = 200  # a burst of joins this large (or larger) is frozen once it settles
UNFREEZE_BELOW_SHARE = 0.5  # unfrozen when fewer than half the sockets frozen are still open


class Freezer:
    """Keeps full collections short on a replica holding thousands of sockets: a socket's objects
    live as long as it does, yet every full collection walks them all (0.9 s at 1,600 sockets,
    bench/rehearsal.py). Each time a few hundred new sockets have joined, a young collection, then
    `gc.freeze()`: what exists is left out of later collections. Garbage
    that was frozen in a cycle waits: when most frozen sockets have closed, `gc.unfreeze()` hands
    it back to the next full collection (one long pause, at a quiet moment)."""

    def __init__(self):
        self.frozen_at = 0  # sockets open at the last freeze
        self.freezes = self.unfreezes = 0

    def check(self, sockets: int) -> None:
        """Called every second or so, with the sockets open now."""
        if sockets - self.frozen_at >= FREEZE_AFTER_NEW_SOCKETS:
            gc.collect(1)  # (the young garbage goes first: frozen, it would wait)
            gc.freeze()
            self.frozen_at, self.freezes = sockets, self.freezes + 1
        elif self.frozen_at and sockets < self.frozen_at * UNFREEZE_BELOW_SHARE:
            gc.unfreeze()
            self.frozen_at, self.unfreezes = 0, self.unfreezes + 1
