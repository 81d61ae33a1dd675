"""Helpers for tests on the multi-node Ray cluster."""

from __future__ import annotations


import ray

from sneakers23.cluster import NAMESPACE
from sneakers23.actors.node_cache import cache_name
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from harness import nodes, shop
from harness.nodes import PER_NODE, web_replicas, web_replicas_running, web_replicas_scaled_to  # noqa: F401 (the tests import them from here)


def add_node(cluster, name: str):
    """A worker node told apart by the custom resource `name`, with a Serve proxy port of its own
    (harness/nodes.py), noted in `cluster.proxy_ports`."""
    return nodes.add_node(cluster, name, cluster.proxy_ports)


def remove_node(cluster, name: str, node) -> None:
    """Kills the node (its raylet, workers, proxy and sockets go with it)."""
    cluster.proxy_ports.pop(name, None)
    cluster.remove_node(node)


def node_id(resource: str) -> str:
    """The id of the live node that carries the custom resource (head, node_a, node_b, …)."""
    for node in ray.nodes():
        if node["Alive"] and resource in node["Resources"]:
            return node["NodeID"]
    raise LookupError(f"no live node has {resource}")


def cache(resource: str):
    return ray.get_actor(cache_name(node_id(resource)), namespace=NAMESPACE)


def cached_counts(resource: str) -> dict[int, int]:
    snapshot = ray.get(cache(resource).snapshot.remote())
    return {item.id: item.available_count for product in snapshot.products for item in product.items}


def cached_products(resource: str):
    return ray.get(cache(resource).snapshot.remote()).products


def stats_if_up(resource: str):
    """The cache's stats, or None while it is restarting."""
    try:
        return ray.get(cache(resource).stats.remote(), timeout=5)
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
        return None


def matches_database(resource: str, settings: Settings) -> bool:
    if stats_if_up(resource) is None:
        return False
    inventory = Inventory(settings)
    try:
        return cached_products(resource) == inventory.complete_products()
    finally:
        inventory.close()


@ray.remote(num_cpus=0)
def _on_node(settings: Settings, operation: str, *args):
    """Runs an inventory operation in a process on a chosen node, through the cluster's replication."""
    from sneakers23.cluster import RayReplication

    inventory = Inventory(settings, replication=RayReplication())
    try:
        result = getattr(inventory, operation)(*args)
        return result, ray.get_runtime_context().get_node_id()
    finally:
        inventory.close()


def on_node(resource: str, settings: Settings, operation: str, *args):
    result, ran_on = ray.get(_on_node.options(resources={resource: 0.01}).remote(settings, operation, *args))
    assert ran_on == node_id(resource)
    return result


def database_counts(settings: Settings) -> dict[int, int]:
    inventory = Inventory(settings)
    try:
        return shop.all_counts(inventory)
    finally:
        inventory.close()


def ensure_released(settings: Settings, product_id: int = 1) -> None:
    """Other tests reseed the shared database: release again (idempotent) and wait for the caches."""
    from sneakers23.cluster import RayReplication

    inventory = Inventory(settings, replication=RayReplication())
    try:
        inventory.release(product_id)
    finally:
        inventory.close()
    from harness.waiting import wait_for

    for node in ("head", "node_a", "node_b"):
        wait_for(lambda node=node: next(p for p in cached_products(node) if p.id == product_id).released,
                 what=f"{node} to see product {product_id} released")


def reseed(settings: Settings, random_seed: int) -> Inventory:
    """The original seeds again (nothing released), with every node's cache reloaded."""
    from harness.waiting import wait_for

    inventory = Inventory(settings)
    inventory.seed(random_seed=random_seed, reset=True)
    for node in ("head", "node_a", "node_b"):
        wait_for(lambda node=node: matches_database(node, settings), timeout=20, what=f"{node} to reload")
    return inventory


def live_node_count() -> int:
    return sum(1 for node in ray.nodes() if node["Alive"])
