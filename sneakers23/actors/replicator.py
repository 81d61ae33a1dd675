"""The replication actor: carries every change to the cache of every node.

It also keeps the set of caches equal to the set of live nodes (and nothing else: scheduled
releases are the release clock's, actors/release_clock.py): a node that joins gets a cache
within `watch_seconds` without anyone acting, and the cache of a node that died is let go. A change
goes to each cache once per publish; caches apply only newer versions, so nothing loops or applies
twice, and a delivery that is lost anyway is healed by the caches' anti-entropy (an AccountChanged,
by the replicas' recheck of a session; a DrawFinished, by the pages' recheck of their outcome).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import ray
from ray.util import metrics

from sneakers23.cluster import REPLICATOR_NAME, detached
from sneakers23.actors.node_cache import CacheStats, cache_for_node
from sneakers23.cluster import check_database_fits
from sneakers23.db.engine import database_identity, describe_url
from sneakers23.domain.changes import Change
from sneakers23.errors import Sneakers23Error
from sneakers23.group_commit import GroupCommit
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

WATCH_SECONDS = 1.0
STATS_TIMEOUT_S = 3.0
LAG_WINDOW_S = 10.0  # a node's cache lag shown is the worst of this long


@dataclass
class NodeStatus:
    node_id: str
    address: str
    is_head: bool
    cache: CacheStats | None
    error: str | None = None


@dataclass
class ReplicationStatus:
    published: int
    delivered: int
    failed: int
    dropped: int
    fault: dict
    started_at: float
    nodes: list[NodeStatus] = field(default_factory=list)


# Task events (per-call records for the dashboard) cost CPU on every one of its many small calls.
@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class Replicator:
    def __init__(self, settings: Settings, node_inventory: Callable[[], Inventory],
                 watch_seconds: float = WATCH_SECONDS):
        self._settings = settings
        self._node_inventory = node_inventory
        self._watch_seconds = watch_seconds
        self._caches: dict[str, ray.actor.ActorHandle] = {}
        self._nodes: dict[str, dict] = {}
        self._published = self._delivered = self._failed = self._dropped = 0
        # Fault injection, for tests and drills: drop deliveries on purpose.
        self._drop_probability = 0.0
        self._drop_node: str | None = None
        self._started_at = time.time()
        # Per node, the changes waiting for its cache: sent one call at a time, and what arrives
        # while a call is under way goes in the next, so a busy cluster sends fewer, larger messages.
        self._outboxes: dict[str, GroupCommit[list[Change], None]] = {}
        # A node's cache lag: from a change reaching this actor to the node's cache having applied it.
        self._queued_at: dict[str, float] = {}  # when the oldest change waiting for the node came
        self._in_flight: dict[str, float] = {}  # when the oldest change of the call under way came
        self._lags: dict[str, deque[tuple[float, float]]] = {}  # node -> (delivered at, lag), recent
        self._lag_gauge = metrics.Gauge("sneakers23_cache_lag_seconds",
                                        "From a change reaching the replication actor to its node cache applying it", tag_keys=("node",))
        self._tasks: set[asyncio.Task] = set()
        # At once, and again after every restart: the nodes need no caller (async actors run
        # __init__ before their event loop; a task created here starts with it).
        keep(self._tasks, asyncio.get_event_loop().create_task(self._watch_forever()))

    async def ready(self) -> list[str]:
        """Returns once every live node has a loaded cache; the node ids."""
        await self._sync_nodes()
        caches = list(self._caches.items())
        outcomes = await asyncio.gather(*(cache.stats.remote() for _node, cache in caches), return_exceptions=True)
        for (node_id, cache), outcome in zip(caches, outcomes):
            if isinstance(outcome, ray.exceptions.ActorDiedError) and self._caches.get(node_id) is cache:
                del self._caches[node_id]  # made again by the next sync of the nodes
        return sorted(self._caches)

    async def publish(self, changes: list[Change]) -> int:
        """Queue the changes for every node's cache; returns once queued (not applied)."""
        self._published += len(changes)
        queued = 0
        for node_id in list(self._caches):
            if self._drop_probability and self._drop_node in (None, node_id) \
                    and random.random() < self._drop_probability:
                self._dropped += 1
                continue
            outbox = self._outboxes.get(node_id)
            if outbox is None:
                outbox = self._outboxes[node_id] = GroupCommit(
                    functools.partial(self._deliver, node_id), cut_short=lambda: RuntimeError("stopping"))
            if not outbox.waiting:
                self._queued_at[node_id] = time.monotonic()
            outbox.send([changes])
            queued += 1
        return queued

    async def _deliver(self, node_id: str, batch: list[list[Change]]) -> None:
        """One call to a node's cache with every change that waited for it."""
        since = self._queued_at.pop(node_id, time.monotonic())
        cache = self._caches.get(node_id)
        if cache is None:  # the node left
            return None
        self._in_flight[node_id] = since  # (a cache that hangs shows its lag growing)
        try:
            await cache.apply.remote([change for changes in batch for change in changes])
            self._delivered += 1
            self._note_lag(node_id, time.monotonic() - since)
        except Exception as error:  # a dying node's cache; anti-entropy heals the rest
            self._failed += 1
            log.info("delivery to %s failed: %s", node_id, error)
        finally:
            self._in_flight.pop(node_id, None)
        return None

    def _note_lag(self, node_id: str, lag: float) -> None:
        now = time.monotonic()
        recent = self._lags.setdefault(node_id, deque())
        recent.append((now, lag))
        while recent and now - recent[0][0] > LAG_WINDOW_S:
            recent.popleft()
        self._lag_gauge.set(lag, tags={"node": node_id})

    async def lags(self) -> dict[str, dict]:
        """Per node's cache: the worst lag of the last LAG_WINDOW_S seconds and the last one (ms),
        and how long the oldest change not yet applied there (waiting, or in the call under way) has waited."""
        now = time.monotonic()
        lags = {}
        for node_id in self._caches:
            recent = [lag for at, lag in self._lags.get(node_id, ()) if now - at <= LAG_WINDOW_S]
            oldest = self._in_flight.get(node_id, self._queued_at.get(node_id))
            waiting = now - oldest if oldest is not None else 0.0
            lags[node_id] = {"last_ms": round(recent[-1] * 1000, 1) if recent else None,
                             "max_ms": round(max([*recent, waiting]) * 1000, 1),
                             "waiting_ms": round(waiting * 1000, 1), "deliveries": len(recent)}
        return lags

    async def set_fault(self, drop_probability: float = 0.0, node_id: str | None = None) -> None:
        """Drop this share of deliveries (to one node's cache, or to all); 0 turns it off."""
        if not 0.0 <= drop_probability <= 1.0:
            raise ValueError("drop_probability is between 0 and 1")
        self._drop_probability, self._drop_node = drop_probability, node_id

    async def caches(self) -> dict[str, ray.actor.ActorHandle]:
        return dict(self._caches)

    async def database(self) -> str:
        """The database this store sells from (its URL, without the password)."""
        return describe_url(self._settings.database_url)

    async def status(self) -> ReplicationStatus:
        nodes = []
        for node_id, cache in sorted(self._caches.items()):
            node = self._nodes.get(node_id, {})
            status = NodeStatus(node_id, node.get("NodeManagerAddress", "?"), _is_head(node), None)
            try:
                status.cache = await asyncio.wait_for(cache.stats.remote(), STATS_TIMEOUT_S)
            except Exception as error:
                status.error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            nodes.append(status)
        fault = {"drop_probability": self._drop_probability, "node_id": self._drop_node}
        return ReplicationStatus(self._published, self._delivered, self._failed, self._dropped, fault,
                                 self._started_at, nodes)

    async def _watch_forever(self) -> None:
        while True:
            try:
                await self._sync_nodes()
            except Exception as error:
                log.warning("watching the nodes failed: %s", error)
            await asyncio.sleep(self._watch_seconds)

    async def _sync_nodes(self) -> None:
        nodes = await asyncio.to_thread(ray.nodes)
        alive = {n["NodeID"]: n for n in nodes if n.get("Alive")}
        if alive.keys() - self._nodes.keys():
            try:
                check_database_fits(self._settings, nodes)
            except Sneakers23Error as error:  # a machine joined a SQLite store: say it loudly
                log.error("%s", error)
        self._nodes = alive
        for node_id in alive.keys() - self._caches.keys():
            # Registered before it finishes loading: changes published from now on queue for it,
            # and everything committed before is in what it loads.
            self._caches[node_id] = await asyncio.to_thread(cache_for_node, node_id, self._settings, self._node_inventory)
            log.info("node %s joined: its cache is starting", node_id)
        for node_id in self._caches.keys() - alive.keys():
            cache = self._caches.pop(node_id)
            self._outboxes.pop(node_id, None)  # (a call under way ends by itself; nothing more is sent)
            self._queued_at.pop(node_id, None)
            self._lags.pop(node_id, None)
            self._lag_gauge.set(0, tags={"node": node_id})  # (a lost node shows no lag, not its last)
            log.info("node %s is gone: letting its cache go", node_id)
            try:
                ray.kill(cache, no_restart=True)  # frees its name; it cannot come back there
            except Exception:
                pass


def _is_head(node: dict) -> bool:
    return any(key.startswith("node:__internal_head__") for key in node.get("Resources", {}))


def replication_actor(settings: Settings, node_inventory: Callable[[], Inventory],
                      watch_seconds: float = WATCH_SECONDS):
    """The cluster's replication actor, created if it is not running (detached: it outlives us).
    `node_inventory` makes each node cache's way to the database, in the cache's process."""
    return detached(Replicator, REPLICATOR_NAME).remote(settings, node_inventory, watch_seconds)


def start_replication(settings: Settings, node_inventory: Callable[[], Inventory],
                      watch_seconds: float = WATCH_SECONDS, while_waiting: Callable[[], None] | None = None):
    """The cluster's replication actor, started if need be; returns when every node's cache is
    loaded. `while_waiting` is called meanwhile, and may raise to stop waiting."""
    replicator = replication_actor(settings, node_inventory, watch_seconds)
    theirs = ray.get(replicator.database.remote())
    if database_identity(theirs) != database_identity(settings.database_url):
        raise Sneakers23Error(f"the replication running on this cluster is another store's (it sells from {theirs})")
    ready = replicator.ready.remote()
    while while_waiting is not None and not ray.wait([ready], timeout=0.2)[0]:
        while_waiting()
    ray.get(ready)
    return replicator
