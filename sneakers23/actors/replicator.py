"""The replication actor: carries every change to the cache of every node.

It also keeps the set of caches equal to the set of live nodes (and nothing else: scheduled
releases are the release clock's, actors/release_clock.py): a node that joins gets a cache
within `watch_seconds` without anyone acting, and the cache of a node that died is let go. A change
goes to each cache once per publish; caches apply only newer versions, so nothing loops or applies
twice, and a delivery that is lost anyway is healed by the caches' anti-entropy (an AccountChanged,
by the replicas' recheck of a session; a DrawFinished, by the pages' recheck of their outcome).

Up to `replication_group_size` nodes it calls each cache itself. Past it, it calls one relay per
group of nodes, which calls the group's caches (actors/relay.py): its own work is then changes x
groups, not changes x nodes. (What waits to be sent when the cluster crosses that size, or for a
relay let go, is dropped, and healed by the caches' anti-entropy as any lost message.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sneakers23.cluster import REPLICATOR_NAME, detached
from sneakers23.actors.deliveries import NOBODY, Deliveries, Fault, Item
from sneakers23.actors.node_cache import CacheStats, cache_for_node
from sneakers23.actors.relay import Relay, apply_to_cache, regrouped
from sneakers23.cluster import check_database_fits
from sneakers23.db.engine import database_identity, describe_url
from sneakers23.domain.changes import Change
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

WATCH_SECONDS = 1.0
STATS_TIMEOUT_S = 3.0


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
    groups: dict[str, list[str]] = field(default_factory=dict)  # relays' groups of nodes, if any


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
        self._published = 0
        # The relays' calls to their caches, added up from their answers (and the deliveries dropped
        # on purpose by the fault while there are relays, decided here).
        self._relays_counted = [0, 0, 0]  # delivered, failed, dropped
        self._fault = Fault()
        self._started_at = time.time()
        # To each node's cache itself, or (past the group size) to each group's relay.
        self._direct = Deliveries(apply_to_cache, lag_gauge=True)
        self._relayed = Deliveries(self._to_relay)
        self._groups: dict[str, list[str]] = {}
        self._relays: dict[str, ray.actor.ActorHandle] = {}
        self._membership = 0  # the grouping's number: a relay handed an older one (or none) is handed its group
        self._group_size = settings.replication_group_size
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
                self._forget_cache(node_id)  # made again by the next sync of the nodes
        return sorted(self._caches)

    async def publish(self, changes: list[Change]) -> int:
        """Queue the changes for every node's cache (or its group's relay); returns once queued (not
        applied), with how many caches or relays they were queued for."""
        self._published += len(changes)
        if not self._relays:
            return self._direct.send(changes, time.monotonic())
        skip = frozenset(node for node in self._caches if self._fault.drops(node)) \
            if self._fault.drop_probability else NOBODY
        self._relays_counted[2] += len(skip)
        return self._relayed.send(changes, time.monotonic(), skip)

    async def _to_relay(self, group: str, relay: Any, batch: list[Item], _since: float) -> None:
        now = time.monotonic()
        aged = [(changes, now - reached_at, skip) for changes, reached_at, skip in batch]  # (its clock is not ours)
        membership = self._membership
        for _ in range(3):
            done = await relay.apply.remote(aged, membership)
            if done is not None:
                self._relays_counted = [counted + more for counted, more in zip(self._relays_counted, done)]
                return
            # Restarted, or the groups changed: it is handed its group as it is now, then the batch.
            membership = self._membership
            caches = {node_id: self._caches[node_id] for node_id in self._groups.get(group, ()) if node_id in self._caches}
            await relay.use.remote(membership, caches)
        raise RuntimeError(f"the relay of {group} was handed its group and refused the batch again")

    async def set_group_size(self, size: int) -> None:
        """Relays past this many nodes, in groups of at most so many, from now on (for drills and
        tests; the store's comes from its settings)."""
        if size < 1:
            raise ValueError("a group has at least one node")
        self._group_size = size
        self._regroup()

    async def lags(self) -> dict[str, dict]:
        """Per node's cache: the worst lag of the last ten seconds and the last one (ms), and how long
        the oldest change not yet applied there (waiting, or in the call under way) has waited."""
        if not self._relays:
            return self._direct.lags()
        hops = self._relayed.lags()
        relays = list(self._relays.items())
        replies = await asyncio.gather(*(asyncio.wait_for(relay.lags.remote(), STATS_TIMEOUT_S)
                                         for _group, relay in relays), return_exceptions=True)
        lags = {}
        for (group, _relay), reply in zip(relays, replies):
            hop = hops.get(group, {})
            waiting = hop.get("waiting_ms", 0.0)  # (still with this actor: no cache of the group has it)
            for node_id in self._groups.get(group, ()):
                mine = reply.get(node_id) if isinstance(reply, dict) else None
                if mine is None:  # (the relay did not answer, or has not been handed its group yet)
                    mine = {"last_ms": None, "max_ms": hop.get("max_ms", 0.0), "waiting_ms": waiting, "deliveries": 0}
                waiting_here = max(mine["waiting_ms"], waiting)
                lags[node_id] = {**mine, "waiting_ms": waiting_here, "max_ms": max(mine["max_ms"], waiting_here)}
        return lags

    async def set_fault(self, drop_probability: float = 0.0, node_id: str | None = None) -> None:
        """Drop this share of deliveries (to one node's cache, or to all); 0 turns it off."""
        if not 0.0 <= drop_probability <= 1.0:
            raise ValueError("drop_probability is between 0 and 1")
        self._fault = self._direct.fault = Fault(drop_probability, node_id)

    async def caches(self) -> dict[str, ray.actor.ActorHandle]:
        return dict(self._caches)

    async def relays(self) -> dict[str, ray.actor.ActorHandle]:
        """Each group's relay (none while the nodes are no more than the group size)."""
        return dict(self._relays)

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
        relays = list(self._relays.values())
        for done in await asyncio.gather(*(asyncio.wait_for(relay.tally.remote(), STATS_TIMEOUT_S)
                                           for relay in relays), return_exceptions=True):
            if isinstance(done, tuple):  # (what each did since its last answer; one that does not answer, later)
                self._relays_counted = [counted + more for counted, more in zip(self._relays_counted, done)]
        relays_delivered, relays_failed, relays_dropped = self._relays_counted
        delivered = self._direct.delivered + relays_delivered
        failed = self._direct.failed + self._relayed.failed + relays_failed
        dropped = self._direct.dropped + relays_dropped
        fault = {"drop_probability": self._fault.drop_probability, "node_id": self._fault.node_id}
        return ReplicationStatus(self._published, delivered, failed, dropped, fault, self._started_at, nodes,
                                 {group: list(members) for group, members in self._groups.items()})

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
            self._regroup()
            log.info("node %s joined: its cache is starting", node_id)
        for node_id in self._caches.keys() - alive.keys():
            cache = self._forget_cache(node_id)
            log.info("node %s is gone: letting its cache go", node_id)
            try:
                ray.kill(cache, no_restart=True)  # frees its name; it cannot come back there
            except Exception:
                pass

    def _forget_cache(self, node_id: str) -> Any:
        cache = self._caches.pop(node_id)
        self._regroup()  # (which lets its outbox go)
        return cache

    def _regroup(self) -> None:
        """Deliver to each cache, or past the group size to each group's relay; a node stays in its
        group while it lives."""
        size = self._group_size
        groups = regrouped(self._groups, self._caches, size) if len(self._caches) > size else {}
        self._direct.use({} if groups else self._caches)
        if groups == self._groups:
            return
        self._membership += 1
        for group in self._relays.keys() - groups.keys():
            try:
                ray.kill(self._relays.pop(group))  # (what it carried, anti-entropy heals)
            except Exception:
                pass
        for group in groups.keys() - self._relays.keys():
            self._relays[group] = self._start_relay(groups[group][0])
        self._groups = groups
        self._relayed.use(self._relays)
        log.info("replication: %s", f"{len(groups)} relays" if groups else "to each cache")

    def _start_relay(self, node_id: str) -> Any:
        """A group's relay, on one of its nodes where it can be (owned by this actor: it ends with it)."""
        return Relay.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)).remote()


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
