"""Changes carried to a set of receivers: node caches, or the relays that carry them on to a group of
caches. Written once, for the replication actor and its relays (actors/replicator.py, relay.py).

Each receiver has its own outbox (a group commit): one call at a time, and what arrives while a call
is under way goes in the next, so a busy cluster sends fewer, larger messages and a slow receiver
delays only itself. A change is timed from the moment it reached the replication actor to the end
of the call that carried it (on this process's monotonic clock: a relay is handed each change's age,
not a time another machine's clock would read).

What a receiver is handed is the batch of publishes that waited for it, each as an `Item`: the
changes, when they reached the replication actor (or, handed to a relay, how long ago), and the
nodes whose caches must not have them (a fault injected on purpose, decided once, where they were
published).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ray.util import metrics

from sneakers23.domain.changes import Change
from sneakers23.group_commit import GroupCommit

log = logging.getLogger(__name__)

LAG_WINDOW_S = 10.0  # a receiver's lag shown is the worst of this long

# One publish: its changes, when they reached the replication actor, the nodes not to have them.
Item = tuple[list[Change], float, frozenset[str]]
# How a batch is handed to one receiver: (its id, its handle, the batch, when its oldest reached the
# replication actor).
Call = Callable[[str, Any, list[Item], float], Awaitable[object]]
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fault:
    """Fault injection, for tests and drills: this share of deliveries dropped on purpose, to one
    node's cache or to all."""
    drop_probability: float = 0.0
    node_id: str | None = None

    def drops(self, node_id: str) -> bool:
        """Whether this delivery to the node's cache is dropped (drawn afresh each time)."""
        return bool(self.drop_probability) and self.node_id in (None, node_id) \
            and random.random() < self.drop_probability


class Deliveries:
    def __init__(self, call: Call, lag_gauge: bool = False):
        self._call = call
        self.receivers: dict[str, Any] = {}
        self.fault = Fault()
        self.delivered = self.failed = self.dropped = 0
        self._outboxes: dict[str, GroupCommit[Item, None]] = {}
        self._queued_at: dict[str, float] = {}  # when the oldest change waiting for a receiver reached the replicator (monotonic)
        self._in_flight: dict[str, float] = {}  # the same, for the call under way
        self._lags: dict[str, deque[tuple[float, float]]] = {}  # receiver -> (delivered at, lag), recent
        self._gauge = metrics.Gauge("sneakers23_cache_lag_seconds",
                                    "From a change reaching the replication actor to its node cache applying it",
                                    tag_keys=("node",)) if lag_gauge else None

    def remove(self, receiver_id: str) -> None:
        """Nothing more goes to it (a call under way ends by itself; what waited is dropped, and
        healed by the caches' anti-entropy as any lost message)."""
        self.receivers.pop(receiver_id, None)
        self._outboxes.pop(receiver_id, None)
        self._queued_at.pop(receiver_id, None)
        self._lags.pop(receiver_id, None)
        if self._gauge is not None:
            self._gauge.set(0, tags={"node": receiver_id})  # (a lost node shows no lag, not its last)

    def use(self, receivers: dict[str, Any]) -> None:
        """Deliver to these from now on, and to no other."""
        for gone in self.receivers.keys() - receivers.keys():
            self.remove(gone)
        self.receivers.update(receivers)

    def send(self, changes: list[Change], reached_at: float, skip: frozenset[str] = NOBODY) -> int:
        """Queue the changes for every receiver, but those in `skip` and those the fault drops (for
        a relay: the nodes in `skip` are left out by the relay); how many it was queued for."""
        queued = 0
        for receiver_id in list(self.receivers):
            if receiver_id in skip:  # (counted where it was decided)
                continue
            if self.fault.drops(receiver_id):
                self.dropped += 1
                continue
            outbox = self._outboxes.get(receiver_id) or self._new_outbox(receiver_id)
            if not outbox.waiting:
                self._queued_at[receiver_id] = reached_at
            outbox.send([(changes, reached_at, skip)])
            queued += 1
        return queued

    def _new_outbox(self, receiver_id: str) -> GroupCommit[Item, None]:
        outbox: GroupCommit[Item, None] = GroupCommit(lambda batch: self._deliver(receiver_id, outbox, batch),
                                                      cut_short=lambda: RuntimeError("stopping"))
        self._outboxes[receiver_id] = outbox
        return outbox

    async def idle(self) -> None:
        """Returns once no outbox has anything waiting or under way."""
        while busy := [outbox for outbox in self._outboxes.values() if outbox.busy or outbox.waiting]:
            for outbox in busy:
                await outbox.idle()

    async def _deliver(self, receiver_id: str, outbox: GroupCommit, batch: list[Item]) -> None:
        """One call to a receiver with every publish that waited for it."""
        handle = self.receivers.get(receiver_id)
        if handle is None or self._outboxes.get(receiver_id) is not outbox:  # it left (and may be back, anew)
            return None
        since = self._queued_at.pop(receiver_id, min(reached_at for _changes, reached_at, _skip in batch))
        self._in_flight[receiver_id] = since  # (a receiver that hangs shows its lag growing)
        try:
            await self._call(receiver_id, handle, batch, since)
            self.delivered += 1
            if self._outboxes.get(receiver_id) is outbox:  # (not for one let go meanwhile)
                self._note_lag(receiver_id, time.monotonic() - since)
        except Exception as error:  # a dying node's cache or relay; anti-entropy heals the rest
            self.failed += 1
            log.info("delivery to %s failed: %s", receiver_id, error)
        finally:
            if self._outboxes.get(receiver_id) is outbox:  # (not a new call's, to one let go and back)
                self._in_flight.pop(receiver_id, None)
        return None

    def _note_lag(self, receiver_id: str, lag: float) -> None:
        now = time.monotonic()
        recent = self._lags.setdefault(receiver_id, deque())
        recent.append((now, lag))
        while recent and now - recent[0][0] > LAG_WINDOW_S:
            recent.popleft()
        if self._gauge is not None:
            self._gauge.set(lag, tags={"node": receiver_id})

    def lags(self) -> dict[str, dict]:
        """Per receiver: the worst lag of the last LAG_WINDOW_S seconds and the last one (ms), and
        how long the oldest change not yet delivered there (waiting, or in the call under way) has
        waited since it reached the replication actor."""
        now = time.monotonic()
        lags = {}
        for receiver_id in self.receivers:
            recent = [lag for at, lag in self._lags.get(receiver_id, ()) if now - at <= LAG_WINDOW_S]
            oldest = self._in_flight.get(receiver_id, self._queued_at.get(receiver_id))
            waiting = max(now - oldest, 0.0) if oldest is not None else 0.0
            lags[receiver_id] = {"last_ms": round(recent[-1] * 1000, 1) if recent else None,
                                 "max_ms": round(max([*recent, waiting]) * 1000, 1),
                                 "waiting_ms": round(waiting * 1000, 1), "deliveries": len(recent)}
        return lags


def changes_in(batch: list[Item]) -> list[Change]:
    """A batch's changes, in the order they were published."""
    return [change for changes, _reached_at, _skip in batch for change in changes]
