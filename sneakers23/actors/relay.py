"""Replication by node group: a relay carries the replication actor's changes on to the caches of
one group of nodes, so that the replication actor's work is changes x groups, not changes x nodes
(docs/capacity.md: its calls and its pickling, once per receiver, are what cap it first).

The replication actor groups the nodes once a cluster has more than `replication_group_size` of
them (actors/replicator.py), and starts one relay per group on a node of that group. A relay holds
nothing that matters: what it was carrying when it was lost, the caches' anti-entropy heals, as it
heals any lost message. Restarted, it knows no group, and says so at its next batch; the
replication actor then hands it its group again. Each answer to a batch carries what the relay did
since its last answer (calls delivered, failed, dropped), which the replication actor adds up: a
relay's counts do not go with it.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

import ray

from sneakers23.actors.deliveries import Deliveries, Item, changes_in


def regrouped(groups: Mapping[str, list[str]], nodes: Iterable[str], size: int) -> dict[str, list[str]]:
    """The nodes in groups of at most `size`. A node stays in its group while it lives and the
    group is within the size (its relay keeps carrying to it); a new node fills the group with the
    most room, or starts a new group. Empty groups go; a cluster that shrank to where twice as many
    groups as it needs are left is grouped afresh (the replication actor's work is one call a
    group)."""
    alive = set(nodes)
    kept = {name: [node for node in members if node in alive][:size] for name, members in groups.items()}
    kept = {name: members for name, members in kept.items() if members}
    if len(kept) > 2 * math.ceil(len(alive) / size):
        kept = {}
    placed = {node for members in kept.values() for node in members}
    for node in sorted(alive - placed):
        roomiest = min(kept, key=lambda name: (len(kept[name]), _number(name)), default=None)
        if roomiest is None or len(kept[roomiest]) >= size:
            roomiest = next(f"group-{n}" for n in range(len(kept) + 1) if f"group-{n}" not in kept)
            kept[roomiest] = []
        kept[roomiest].append(node)
    return kept


def _number(group: str) -> int:
    return int(group.rpartition("-")[2])


async def apply_to_cache(_node_id: str, cache: Any, batch: list[Item], _since: float) -> object:
    return await cache.apply.remote(changes_in(batch))


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class Relay:
    def __init__(self):
        self._deliveries = Deliveries(apply_to_cache, lag_gauge=True)
        self._membership: int | None = None  # the replication actor's grouping this relay was handed
        self._told = (0, 0, 0)  # its counts at its last answer

    async def use(self, membership: int, caches: dict[str, Any]) -> None:
        """Its group's caches, as of the replication actor's grouping `membership`."""
        self._deliveries.use(caches)
        self._membership = membership

    async def apply(self, batch: list[Item], membership: int) -> tuple[int, int, int] | None:
        """Queue each publish of the batch (with its age, in seconds, where an Item has when it
        came) for the group's caches, but the nodes it skips; the calls delivered, failed and
        dropped since its last answer. None (nothing queued) when this relay was not handed that
        grouping (it restarted, or the groups changed since)."""
        if membership != self._membership:
            return None
        now = time.monotonic()
        for changes, age, skip in batch:
            self._deliveries.send(changes, now - age, skip)
        return await self.tally()

    async def tally(self) -> tuple[int, int, int]:
        """The calls to its caches delivered, failed and dropped since its last answer (to a batch
        or to this): the replication actor adds them up."""
        counts = self._counts()
        since = (counts[0] - self._told[0], counts[1] - self._told[1], counts[2] - self._told[2])
        self._told = counts
        return since

    async def lags(self) -> dict[str, dict]:
        return self._deliveries.lags()

    async def counts(self) -> tuple[int, int, int]:
        """Calls to its caches since it started: delivered, failed, dropped on purpose."""
        return self._counts()

    def _counts(self) -> tuple[int, int, int]:
        return self._deliveries.delivered, self._deliveries.failed, self._deliveries.dropped

    async def idle(self) -> None:
        await self._deliveries.idle()
