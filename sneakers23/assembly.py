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

The store's actors sit below this module: what they use is made here and handed to them when they
start (a node cache's inventory, the release clock's, a sales actor's replication), as a function
where it must be made in the actor's own process.
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

    if not cluster.join(settings):
        return Inventory(settings)
    store = cluster.replicator()
    theirs = None if store is None else cluster.database_of(store)
    ours = theirs is not None and database_identity(theirs) == database_identity(settings.database_url)
    return Inventory(settings, replication=cluster.RayReplication(wait=wait, database_url=settings.database_url),
                     sales=ray_sales(settings) if ours else None, activity=RayActivity() if ours else None)


def cluster_inventory(settings: Settings, through_sales: bool = True,
                      product_of: Callable[[int], int | None] | None = None) -> Inventory:
    """The inventory API for a process on the store's own cluster: a sale is committed, then
    published without waiting for replication; purchases go to the products' sales actors
    (`product_of` finds an item's product, from memory where the process has a catalog)."""
    from sneakers23.actors.activity import RayActivity
    from sneakers23.cluster import RayReplication

    sales = ray_sales(settings, product_of=product_of) if through_sales else None
    return Inventory(settings, replication=RayReplication(wait=False), sales=sales, activity=RayActivity(),
                     mail=postbox(settings))


def postbox(settings: Settings):
    """Letters to shoppers: by SMTP when `smtp_url` is set, else to the file of letters (its thread
    starts with the first letter: a process that sends none pays nothing)."""
    from pathlib import Path

    from sneakers23.mail import Postbox, carrier_for

    return Postbox(carrier_for(settings.smtp_url, settings.mail_from, Path(settings.mail_file)))


def ray_sales(settings: Settings, product_of: Callable[[int], int | None] | None = None):
    """The inventory's way to the products' sales actors; a sales actor it starts publishes without
    waiting (`_publishing`), and an item's product is found in the database without `product_of`."""
    from sneakers23.actors.sales import RaySales

    return RaySales(settings, replication=_publishing, database=functools.partial(database_inventory, settings),
                    product_of=product_of)


def sales_actor(settings: Settings, product_id: int):
    """A product's sales actor, found or started (see actors/sales.py `sales_actor`)."""
    from sneakers23.actors import sales

    return sales.sales_actor(settings, product_id, _publishing())


def _publishing():
    from sneakers23.cluster import RayReplication

    return RayReplication(wait=False)


def presence_reports():
    """Where a channel replica's tab tracker sends its reports: the presence actor."""
    from sneakers23.actors.feeds import PresenceReports

    return PresenceReports()


def dashboard_feeds():
    """Where the admin dashboard's figures come from: the presence, activity and replication actors."""
    from sneakers23.actors.feeds import RayFeeds

    return RayFeeds()


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

    replicator = start_replication(settings, _node_inventory(settings), watch_seconds or WATCH_SECONDS,
                                   while_waiting=while_waiting)
    release_clock(_release_clock_inventory(settings), _sales_starter(settings))
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

    replicator = await asyncio.to_thread(replication_actor, settings, _node_inventory(settings))
    replicator.ready.remote()
    await asyncio.to_thread(release_clock, _release_clock_inventory(settings), _sales_starter(settings))
    await asyncio.to_thread(_start_dashboard_actors)


def _node_inventory(settings: Settings) -> Callable[[], Inventory]:
    # Made in each node cache's own process: its reads of the database (it writes nothing).
    return functools.partial(database_inventory, settings)


def _sales_starter(settings: Settings) -> Callable[[int], bool]:
    # Called in the clock's own process: a product's sales actor, started ahead of its purchases.
    return functools.partial(_start_sales_actor, settings)


def _start_sales_actor(settings: Settings, product_id: int) -> bool:
    from sneakers23.actors import sales

    return sales.started_sales_actor(settings, product_id, _publishing())


def _release_clock_inventory(settings: Settings) -> Callable[[], Inventory]:
    # Made in the clock's own process: it releases, then publishes through the replication actor,
    # and closes draws, whose entrants it writes to.
    return functools.partial(_publishing_and_waiting, settings, mail=True)


def _publishing_and_waiting(settings: Settings, mail: bool = False) -> Inventory:
    from sneakers23.cluster import RayReplication

    return Inventory(settings, replication=RayReplication(wait=True), mail=postbox(settings) if mail else None)
