"""Joining the Ray cluster, and publishing changes to its node caches from any process."""

from __future__ import annotations

import logging
from typing import Iterable

import ray

from sneakers23.actors import NAMESPACE
from sneakers23.actors.replicator import REPLICATOR_NAME
from sneakers23.domain.changes import Change
from sneakers23.errors import Sneakers23Error
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0


def join(settings: Settings) -> bool:
    """Connect this process to the cluster that the settings name; False when there is none to join.

    With `cluster = "auto"`, a cluster running on this machine (or at RAY_ADDRESS) is joined if there
    is one; with "none" nothing is; any other value is an address that must answer.
    """
    if ray.is_initialized():
        return True
    if settings.cluster == "none":
        return False
    address = "auto" if settings.cluster == "auto" else settings.cluster
    try:
        # ERROR: a command that only joins should not print Ray's notices (the token one, say).
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as error:
        if settings.cluster == "auto":
            return False
        raise Sneakers23Error(f"cannot join the Ray cluster at {address}: {error}") from None
    return True


def check_database_fits(settings: Settings, nodes: list[dict] | None = None) -> None:
    """SQLite is a file on one machine: a cluster that spans several machines needs PostgreSQL.
    (Several Ray nodes on one machine, as in the tests, share the file and are fine.)"""
    from sqlalchemy import make_url

    if make_url(settings.database_url).get_backend_name() != "sqlite":
        return
    machines = {node["NodeManagerAddress"] for node in (nodes if nodes is not None else ray.nodes())
                if node.get("Alive")}
    if len(machines) > 1:
        raise Sneakers23Error(
            f"this Ray cluster spans {len(machines)} machines, but the database is SQLite, a file on one "
            "machine: set SNEAKERS23_DATABASE_URL to a PostgreSQL database (postgresql+psycopg://…)"
        )


def replicator():
    """The replication actor's handle, or None where the store was never started on this cluster."""
    try:
        return ray.get_actor(REPLICATOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def publishing_inventory(settings: Settings, wait: bool = True):
    """The inventory API, publishing to the caches of the cluster the settings name when there is
    one to join; otherwise it only writes the database."""
    from sneakers23.inventory import Inventory

    replication = RayReplication(wait=wait) if join(settings) else None
    return Inventory(settings, replication=replication)


class RayReplication:
    """Publishes committed changes to every node's cache through the replication actor.

    A publish that fails is logged, never raised: the sale or release is already committed, and the
    caches' anti-entropy picks it up within the resync period.
    """

    def __init__(self, wait: bool = True):
        # wait: until the replication actor has the changes (a process about to exit, the CLI);
        # without it, publishing costs the caller nothing more than a submission.
        self._wait = wait
        self._replicator = None

    def publish(self, changes: Iterable[Change]) -> None:
        changes = list(changes)
        if not changes:
            return
        if self._replicator is None:
            self._replicator = replicator()
            if self._replicator is None:
                return  # no store running on this cluster: the database alone is the record
        try:
            sent = self._replicator.publish.remote(changes)
            if self._wait:
                ray.get(sent, timeout=PUBLISH_TIMEOUT_S)
        except Exception as error:
            log.warning("could not publish %d change(s), the caches will heal by resync: %s", len(changes), error)
            self._replicator = None
