"""The store's actors on a cluster, taken off it together: for a store that leaves a cluster it
joined, or that takes another store's place there."""

from __future__ import annotations

import time

import ray

from sneakers23.cluster import ACTIVITY_NAME, NAMESPACE, PRESENCE_NAME, RELEASE_CLOCK_NAME, REPLICATOR_NAME
from sneakers23.actors.node_cache import cache_name
from sneakers23.actors.sales import sales_actor_names
from sneakers23.errors import Sneakers23Error


def stop_store_actors(timeout_s: float = 10.0) -> None:
    """Stop the replication actor, the release clock, the presence and activity actors, every node's cache and
    every product's sales actor. Returns once
    their names are free, so that a store started next makes new ones, with its own settings."""
    caches = {cache_name(node["NodeID"]) for node in ray.nodes()}
    try:
        replicator = ray.get_actor(REPLICATOR_NAME, namespace=NAMESPACE)
    except ValueError:
        replicator = None
    if replicator is not None:
        try:
            caches |= {cache_name(node_id) for node_id in ray.get(replicator.caches.remote(), timeout=timeout_s)}
        except Exception:
            pass
    deadline = time.monotonic() + timeout_s
    # First those that start others: the replicator makes caches, the release clock sales actors
    # (and neither is made again once the replicator is gone); then what they made, listed now.
    _stop([REPLICATOR_NAME, RELEASE_CLOCK_NAME], deadline, timeout_s)
    _stop([PRESENCE_NAME, ACTIVITY_NAME, *sorted(caches | set(sales_actor_names()))], deadline, timeout_s)


def _stop(taken: list[str], deadline: float, timeout_s: float) -> None:
    """Kills the named actors, and returns once their names are free."""
    killed: set[str] = set()
    while taken:
        for name in list(taken):
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                taken.remove(name)  # gone, its name free
                continue
            if name not in killed:
                ray.kill(actor, no_restart=True)
                killed.add(name)
        if taken and time.monotonic() > deadline:
            raise Sneakers23Error(f"the store's actors did not stop within {timeout_s:.0f}s: {', '.join(taken)}")
        time.sleep(0.05)
