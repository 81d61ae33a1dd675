"""The presence actor: one per cluster, holding every open shopper tab (domain/presence.py).

Each node's channel replica reports what changed among its tabs, in small numbered batches, and a
heartbeat every second; the admin dashboards follow the board from a cursor and get Phoenix
Presence diffs. A node that stops reporting (it died) has its tabs taken off within
`SOURCE_TIMEOUT_S` plus a sweep. The actor holds nothing the sources cannot send again: after a
restart it knows no source, so each is asked for its whole state at its next report, and every
follower starts again from the whole state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import ray
from ray.util import metrics

from sneakers23.cluster import NAMESPACE, ON_HEAD_NODE, PRESENCE_NAME, detached
from sneakers23.domain.presence import BoardRead, PresenceBoard, Report
from sneakers23.following import Bell
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

FOLLOW_TIMEOUT_S = 15.0
SWEEP_S = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class Presence:
    def __init__(self):
        self._board = PresenceBoard(uuid.uuid4().hex)
        self._changed = Bell()
        self._tabs = metrics.Gauge("sneakers23_presence_tabs", "Open shopper tabs tracked, cluster-wide")
        self._shoppers = metrics.Gauge("sneakers23_shoppers_online", "Unique shoppers with a tab open")
        self._sockets = metrics.Gauge("sneakers23_open_sockets", "Open sockets per node's channel replica",
                                      tag_keys=("node",))
        self._tasks: set[asyncio.Task] = set()
        keep(self._tasks, asyncio.get_event_loop().create_task(self._sweep_forever()))

    async def report(self, report: Report) -> bool:
        """A source's changes; False asks it for its whole state next time."""
        before = self._board.cursor
        taken = self._board.report(report, time.monotonic())
        self._wake_if(before)
        return taken

    async def follow(self, epoch: str, cursor: int, timeout_s: float = FOLLOW_TIMEOUT_S) -> BoardRead:
        """The diffs after (epoch, cursor), waiting up to timeout_s for one; or the whole state."""
        return await self._changed.read_when_news(lambda: self._board.read(epoch, cursor),
                                                  lambda read: read.state is not None or bool(read.diffs), timeout_s)

    async def nodes(self) -> dict[str, dict]:
        return self._board.nodes(time.monotonic())

    def _wake_if(self, cursor_before: int) -> None:
        if self._board.cursor != cursor_before:
            self._changed.ring()

    async def _sweep_forever(self) -> None:
        shown: set[str] = set()  # the nodes whose sockets the metrics show
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                before = self._board.cursor
                self._board.expire(time.monotonic())
                self._wake_if(before)
                self._tabs.set(self._board.tabs)
                self._shoppers.set(self._board.shoppers)
                nodes = self._board.nodes(time.monotonic())
                for node, figures in nodes.items():
                    self._sockets.set(figures["sockets"], tags={"node": node})
                for gone in shown - nodes.keys():
                    self._sockets.set(0, tags={"node": gone})
                shown = set(nodes)
            except Exception:  # (never the end of the sweeps: a lost node's tabs must leave)
                log.exception("a presence sweep failed")


def presence_actor():
    """The cluster's presence actor, started if it is not running (detached: it outlives us). Only
    the store's start makes it (sneakers23.assembly); the others look it up (`find_presence`)."""
    return detached(Presence, PRESENCE_NAME, resources=ON_HEAD_NODE).remote()


def find_presence():
    """The running presence actor; ValueError where the store's actors are not running (a store
    stopping must not make it again)."""
    return ray.get_actor(PRESENCE_NAME, namespace=NAMESPACE)
