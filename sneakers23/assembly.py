"""The composition root: how the store's parts (settings, inventory, replication, sales, live
catalog, the store's actors) are put together, for each kind of process. Every entry point gets its
parts here, so adding a part is a change in this one place.

| process | what it gets |
|---|---|
| a CLI command that only touches the database (`db upgrade`, `products`) | `database_inventory` |
| a CLI command or a job that changes the shop (`release`, `sell`, `drop …`) | `joined_inventory`: joins the store's cluster when one runs, publishes there and sells through its sales actors |
| a process already on the store's cluster (a web replica, the buyers of a drop) | `cluster_inventory` |
| a web replica | `live_catalog` (its node's inventory in memory; a store deployed with `serve deploy` has it start the store's actors) and `cluster_inventory` |
| `sneakers23 serve` | `start_store_actors` (the release clock gets an inventory that publishes and waits) |

The store's actors sit below this module and make their few parts from the settings they are given:
a node cache reads through an `Inventory`, a sales actor publishes through `RayReplication`.
"""

from __future__ import annotations

import functools
from typing import Callable

from sneakers23.db.engine import database_identity
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings


def database_inventory(settings: Settings) -> Inventory:
    """The inventory API on the database alone: nothing is published, no actor is asked."""
    return Inventory(settings)


def joined_inventory(settings: Settings, wait: bool = True) -> Inventory:
    """The inventory API for a process outside the cluster: it joins the cluster the settings name
    when there is one to join, and publishes to its caches; purchases go to the sales actors of a
    store that sells from this database, and only there. With no cluster, the database alone.
    `wait`: a publish returns once the replication actor has the changes (a process about to exit)."""
    from sneakers23 import cluster  # imports Ray: not for `sneakers23 --help`
    from sneakers23.actors.activity import RayActivity
    from sneakers23.actors.sales import RaySales

    if not cluster.join(settings):
        return Inventory(settings)
    store = cluster.replicator()
    theirs = None if store is None else cluster.database_of(store)
    ours = theirs is not None and database_identity(theirs) == database_identity(settings.database_url)
    return Inventory(settings, replication=cluster.RayReplication(wait=wait, database_url=settings.database_url),
                     sales=RaySales(settings) if ours else None, activity=RayActivity() if ours else None)


def cluster_inventory(settings: Settings, through_sales: bool = True,
                      product_of: Callable[[int], int | None] | None = None) -> Inventory:
    """The inventory API for a process on the store's own cluster: a sale is committed, then
    published without waiting for replication; purchases go to the products' sales actors
    (`product_of` finds an item's product, from memory where the process has a catalog)."""
    from sneakers23.actors.activity import RayActivity
    from sneakers23.actors.sales import RaySales
    from sneakers23.cluster import RayReplication

    sales = RaySales(settings, product_of=product_of) if through_sales else None
    return Inventory(settings, replication=RayReplication(wait=False), sales=sales, activity=RayActivity())


def live_catalog(settings: Settings):
    """A web replica's copy of its node's inventory. A store deployed with `serve deploy` has no one
    else to start its actors, so the copy starts them (if need be) before it follows its node."""
    from sneakers23.live import LiveCatalog

    return LiveCatalog(prepare=functools.partial(_start_store_actors_async, settings))


def start_store_actors(settings: Settings, watch_seconds: float | None = None,
                       while_waiting: Callable[[], None] | None = None):
    """The store's actors on the joined cluster, started where they are not running: the replication
    actor (returns once every node's cache is loaded), the release clock, and the two that the admin
    dashboard reads (presence, activity). Returns the replication actor. `while_waiting` is called
    meanwhile, and may raise to stop waiting."""
    from sneakers23.actors.release_clock import release_clock
    from sneakers23.actors.replicator import WATCH_SECONDS, start_replication

    replicator = start_replication(settings, watch_seconds or WATCH_SECONDS, while_waiting=while_waiting)
    release_clock(_release_clock_inventory(settings))
    _start_dashboard_actors()
    return replicator


def _start_dashboard_actors() -> None:
    from sneakers23.actors.activity import activity_actor
    from sneakers23.actors.presence import presence_actor

    presence_actor()
    activity_actor()


async def _start_store_actors_async(settings: Settings) -> None:
    import asyncio

    from sneakers23.actors.release_clock import release_clock
    from sneakers23.actors.replicator import replication_actor

    replicator = await asyncio.to_thread(replication_actor, settings)
    replicator.ready.remote()
    await asyncio.to_thread(release_clock, _release_clock_inventory(settings))
    await asyncio.to_thread(_start_dashboard_actors)


def _release_clock_inventory(settings: Settings) -> Callable[[], Inventory]:
    # Made in the clock's own process: it releases, then publishes through the replication actor.
    return functools.partial(_publishing_and_waiting, settings)


def _publishing_and_waiting(settings: Settings) -> Inventory:
    from sneakers23.cluster import RayReplication

    return Inventory(settings, replication=RayReplication(wait=True))
