"""The node cache: one actor per Ray node holding that node's inventory in memory.

It loads everything from the database when it starts (and after every restart), applies versioned
changes from the replication actor, heals from the database every `resync_seconds`, and lets the
node's followers (the web replicas) read what it applied from a cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from sneakers23.cluster import NAMESPACE, detached
from sneakers23.domain.catalog import Catalog, Product
from sneakers23.domain.changes import Cart, Change, InventoryChange, WaitingLine
from sneakers23.domain.feed import ChangeFeed, FeedRead
from sneakers23.following import Bell, KeptDuringLoad, follow
from sneakers23.inventory import Inventory
from sneakers23.retries import backoff, patiently, pause
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

FOLLOW_TIMEOUT_S = 15.0
CLOCK_SKEW_S = 5.0  # how far apart the writers' clocks (which stamp a cart's change) may be
# Resyncs (a minute, by default) between full reads of the carts that hold something, made even
# when the totals agree: memory forgets emptied carts, so a missed emptying (the cache's carts
# ahead) and a missed add (behind) can cancel out in the carts' total.
FULL_CART_READ_EVERY = 30


def cache_name(node_id: str) -> str:
    return f"cache-{node_id}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: str
    cursor: int  # follow from here to get every change after this snapshot
    products: list[Product]
    carts: list[Cart]
    lines: tuple[WaitingLine, ...] = ()  # the queued drops' lines


@dataclass(frozen=True, slots=True)
class CacheStats:
    node_id: str
    epoch: str
    version: int  # the sum of the versions held: the database's minus this is the lag
    healed: int  # changes found missing by anti-entropy and applied
    started_at: float
    last_resync_at: float | None


@ray.remote(num_cpus=0, max_restarts=-1)
class NodeCache:
    def __init__(self, settings: Settings, node_id: str, inventory: Callable[[], Inventory]):
        self._settings = settings
        self._node_id = node_id
        self._inventory = inventory()  # its reads of the database; it writes nothing
        # Before any call is served: never half loaded.
        self._catalog = patiently(self._load, f"node cache {node_id}", retry_on=(Exception,))
        self._arrived_during_load: KeptDuringLoad[Change] = KeptDuringLoad()
        self._touched_during_read: set[str] | None = None  # carts changed while anti-entropy reads
        self._feed = ChangeFeed()
        self._healed = 0
        self._started_at = time.time()
        self._last_resync_at: float | None = None
        self._resyncs_since_full = 0
        self._new_change = Bell()
        # Anti-entropy from the start, and again after every restart (async actors run __init__
        # before their event loop; a task created here starts with it).
        self._tasks: set[asyncio.Task] = set()
        keep(self._tasks, asyncio.get_event_loop().create_task(self._resync_forever()))

    def _load(self) -> Catalog:
        return Catalog(self._inventory.complete_products(), self._inventory.all_carts())

    def _publish_to_followers(self, changes: list[Change]) -> None:
        for change in changes:
            self._feed.append(change)
        if changes:
            self._wake_followers()

    def _wake_followers(self) -> None:
        self._new_change.ring()

    # --- what the replication actor calls ---

    async def apply(self, changes: list[Change]) -> int:
        """Apply the changes newer than what is held; returns how many were."""
        self._arrived_during_load.note(changes)
        if self._touched_during_read is not None:
            self._touched_during_read.update(change.shopper_id for change in changes if isinstance(change, Cart))
        applied = [change for change in changes if self._catalog.apply(change)]
        self._publish_to_followers(applied)
        return len(applied)

    # --- what readers and followers call ---

    async def snapshot(self, carts: bool = True) -> Snapshot:
        return Snapshot(self._feed.epoch, self._feed.cursor, self._catalog.products(),
                        self._catalog.carts() if carts else [], tuple(self._catalog.lines()) if carts else ())

    async def follow(self, epoch: str, cursor: int, timeout_s: float = FOLLOW_TIMEOUT_S,
                     carts: bool = True) -> tuple[FeedRead, Snapshot | None]:
        """The changes applied after (epoch, cursor), waiting up to timeout_s for one.

        When the follower cannot continue from its cursor (a restart, a reload, or it fell too far
        behind), it gets a snapshot to start again from. Without `carts`, carts' changes are left
        out, and the queues' lines (a sales actor is not woken by them).
        """
        def read() -> FeedRead:
            nonlocal epoch, cursor
            read = self._feed.read(epoch, cursor)
            if not carts and read.changes:
                read = FeedRead(read.epoch, read.cursor,
                                tuple(change for change in read.changes if isinstance(change, InventoryChange)))
            epoch, cursor = read.epoch, read.cursor  # (past the carts' changes left out, too)
            return read

        read = await self._new_change.read_when_news(read, lambda read: read.reset or bool(read.changes), timeout_s)
        return read, (await self.snapshot(carts) if read.reset else None)

    async def stats(self) -> CacheStats:
        return CacheStats(self._node_id, self._feed.epoch, self._catalog.version_total(), self._healed,
                          self._started_at, self._last_resync_at)

    # --- anti-entropy ---

    async def resync(self) -> int:
        """Catch up with the database; returns how many missed changes were found."""
        # Taken before the query: changes applied while it runs only make the cache newer, so
        # behind means "missed". A cache never holds a product's or a size's version that the
        # database lacks: ahead there, the database went back (reseeded). Its carts may be ahead
        # for a moment (a cart emptied there, not yet here) or until the rows put them right (an
        # emptying missed, or a late change that brought an emptied cart back).
        held = self._catalog.version_totals()
        total = await asyncio.to_thread(self._database_versions)
        self._last_resync_at = time.time()
        self._resyncs_since_full += 1
        if total == held and self._resyncs_since_full < FULL_CART_READ_EVERY:
            return 0  # the common case: one cheap query, nothing missed
        consistent = held[0] <= total[0]
        healed: list[Change] = []
        if consistent:
            # The products and sizes, and the carts changed lately: the carts grow with the
            # shoppers, and a full read of them every few seconds of a drop (when a change is
            # always on its way) would cost more than all else. Every cart that holds something is
            # read when the recent ones cannot account for the database's versions, and every
            # FULL_CART_READ_EVERY resyncs anyway (under load, changes on their way can hide an
            # old one missed; a missed emptying and a missed add can cancel out).
            since = datetime.now(timezone.utc) - timedelta(seconds=self._settings.resync_seconds * 2 + CLOCK_SKEW_S)
            reads = (None,) if self._resyncs_since_full >= FULL_CART_READ_EVERY else (since, None)
            for changed_since in reads:
                self._touched_during_read = set()
                try:
                    current = await asyncio.to_thread(self._database_rows, changed_since)
                    applied, consistent = self._catalog.reconcile(current, every_cart=changed_since is None,
                                                                  touched=self._touched_during_read)
                finally:
                    self._touched_during_read = None
                healed += applied
                if changed_since is None:
                    self._resyncs_since_full = 0
                now_held = self._catalog.version_totals()
                if not consistent or (now_held[0] >= total[0] and now_held[1] >= total[1]):
                    break
            self._healed += len(healed)
            self._publish_to_followers(healed)
        if not consistent:  # the database went back, or holds rows unknown here: start again
            log.warning("node cache %s: the database changed under it (reseeded?): reloading", self._node_id)
            await self._reload()
        return len(healed)

    async def _reload(self) -> None:
        # Changes that arrive while the load runs are kept and applied on top of it: they may
        # have been committed after the load read the rows.
        catalog, arrived = await self._arrived_during_load.load(lambda: asyncio.to_thread(self._load))
        for change in arrived:
            catalog.apply(change)
        for line in self._catalog.lines():  # (no database read has them: kept until the next comes)
            catalog.apply(line)
        self._catalog = catalog
        self._feed.new_epoch()
        self._wake_followers()

    def _database_versions(self) -> tuple[int, int]:
        return self._inventory.database_versions()

    def _database_rows(self, carts_changed_since: datetime | None) -> list[Change]:
        return self._inventory.current_changes(carts_changed_since)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_seconds)
            try:
                await self.resync()
            except Exception as error:  # the database may be away for a while: keep serving, retry
                log.warning("node cache %s: resync failed: %s", self._node_id, error)


async def follow_node_cache(on_snapshot: Callable[[Snapshot], None],
                            on_changes: Callable[[list[Change]], None],
                            prepare: Callable[[], Awaitable[None]] | None = None, carts: bool = True) -> None:
    """Follow this node's cache, forever: `on_snapshot` gets all it holds at the start and
    whenever the cache cannot be followed from the cursor (it restarted, or reloaded); `on_changes`
    gets every change it applies after that, once and in order. A cache that restarts, or a node
    going away, is waited out with backoff (which starts again after every snapshot).

    `prepare` runs once, first (until it succeeds). The node's cache is only looked for, never
    made: the replication actor makes the caches, so a follower that outlives its store (a replica
    draining after a stop) does not bring the store's actors back. Without `carts`, the carts are
    left out of the snapshots and the changes."""
    prepared = prepare is None
    node_id = ray.get_runtime_context().get_node_id()
    while True:
        async for attempt in AsyncRetrying(wait=backoff(0.1, 2.0), retry=retry_if_exception_type(Exception),
                                           before_sleep=_said_following_failed):
            with attempt:
                if not prepared:
                    await prepare()
                    prepared = True
                cache = await asyncio.to_thread(ray.get_actor, cache_name(node_id), NAMESPACE)
                snapshot = await cache.snapshot.remote(carts)
        def take(answer: tuple[FeedRead, Snapshot | None]) -> tuple[str, int]:
            read, restart = answer
            if restart is not None:
                on_snapshot(restart)
            else:
                on_changes(list(read.changes))
            return read.epoch, read.cursor

        try:
            on_snapshot(snapshot)
            await follow(lambda epoch, cursor: cache.follow.remote(epoch, cursor, FOLLOW_TIMEOUT_S, carts), take,
                         snapshot.epoch, snapshot.cursor)
        except Exception as error:  # the cache is restarting, or the node is going away (a cancel passes)
            log.info("following the node cache failed (%s): finding it again", error)
            await pause(0.1)


def _said_following_failed(state: RetryCallState) -> None:
    log.info("finding the node cache failed (%s); again in %.2fs", state.outcome.exception(), state.upcoming_sleep)


def cache_for_node(node_id: str, settings: Settings, inventory: Callable[[], Inventory]):
    """The cache actor of a node: found by name, or created there (pinned, detached, restartable),
    reading the database through what `inventory` makes."""
    return detached(NodeCache, cache_name(node_id),
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
                    ).remote(settings, node_id, inventory)
