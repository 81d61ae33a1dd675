"""Joining the Ray cluster, finding the store of a database on it, and publishing changes to its
node caches from any process (the replication port of the inventory)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Iterable

import ray

from sneakers23.db.engine import database_identity
from sneakers23.domain.changes import Change
from sneakers23.errors import Sneakers23Error
from sneakers23.settings import Settings, check_ray_token

log = logging.getLogger(__name__)

# The store's named actors (sneakers23/actors/), here so that a client finds one without importing it.
NAMESPACE = "sneakers23"  # every named actor lives here, whoever (job, replica, CLI) looks it up
REPLICATOR_NAME = "replicator"
RELEASE_CLOCK_NAME = "release-clock"
PRESENCE_NAME = "presence"  # every open shopper tab (actors/presence.py)
ACTIVITY_NAME = "activity"  # sales and refusals, per second (actors/activity.py)

# The cluster-wide actors that the admin dashboard reads live on the head node, as does the desk
# itself: they die only with the cluster, never with a worker node that a drop can lose.
ON_HEAD_NODE = {"node:__internal_head__": 0.001}


def detached(actor_class, name: str, **options):
    """One of the store's named actors: `.remote(...)` finds it by name, or starts it, detached (it
    outlives its caller; its arguments count only when it starts)."""
    return actor_class.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **options)


PUBLISH_TIMEOUT_S = 5.0
JOIN_PROBE_TIMEOUT_S = 5.0


def join(settings: Settings) -> bool:
    """Connect this process to the cluster that the settings name; False when there is none to join.

    With `cluster = "auto"`: the cluster at RAY_ADDRESS when it is set, else the cluster on this
    machine whose store sells from the settings' database (two stores may run here, each with its
    own cluster), if any. With "none" nothing is joined; any other value is an address that must
    answer.
    """
    if ray.is_initialized():
        return True
    if settings.cluster == "none":
        return False
    address = settings.cluster if settings.cluster != "auto" else os.environ.get("RAY_ADDRESS")
    if address:
        join_address(address)
        return True
    return _join_the_store_of(settings.database_url)


def _join_the_store_of(database_url: str) -> bool:
    from ray._private.services import find_gcs_addresses
    from ray._private.utils import read_ray_address

    running = find_gcs_addresses()  # from the raylets running here: never a stale address
    latest = read_ray_address()  # the last `ray start` here: the likeliest one
    wanted = database_identity(database_url)
    for address in sorted(running, key=lambda address: address != latest):
        try:
            join_address(address, found_here=True)
            store = replicator()
            theirs = None if store is None else database_of(store)
        except Exception:  # a cluster that cannot be asked is not the one
            ray.shutdown()
            continue
        if theirs is not None and database_identity(theirs) == wanted:
            return True
        if store is None and len(running) == 1:  # a lone cluster with no store: a drop's buyers may run there
            return True
        ray.shutdown()
    return False


def database_of(store_replicator) -> str | None:
    """The database a store sells from (its URL, without the password), asked of its replication
    actor; None when it does not answer."""
    try:
        return ray.get(store_replicator.database.remote(), timeout=PUBLISH_TIMEOUT_S)
    except Exception as error:
        log.warning("the store's replication did not answer: %s", error)
        return None


def keep_token_file_private() -> None:
    """Ray's token file (~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH) is readable by its owner alone."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        path.chmod(0o600)
    except OSError:
        pass  # (no file: the token is in the environment)


def use_token_authentication(create: bool = False) -> None:
    """Ray's token authentication, for this process as a client and for the clusters it starts: on
    where a token is at hand, unless RAY_AUTH_MODE says otherwise. With `create`, a token is made
    when there is none (~/.ray/auth_token), as a local `ray.init()` does."""
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    from ray._raylet import AuthenticationTokenLoader, Config

    check_ray_token()
    if "RAY_AUTH_MODE" not in os.environ:
        if not create and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
            return
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")  # Ray read its settings when it was imported: again, with the mode
    if create:
        ensure_token_if_auth_enabled(None, create_token_if_missing=True)
        keep_token_file_private()


def join_address(address: str, found_here: bool = False) -> None:
    """Join the cluster at this address; a one-line error when it does not answer.

    As Ray does, a client presents the token (~/.ray/auth_token) to a cluster it found on this
    machine by itself (`found_here`), and to an address it is given only with RAY_AUTH_MODE=token:
    a client in token mode cannot use a cluster without tokens, nor the other way round."""
    _check_it_answers(address)
    if found_here:
        use_token_authentication()
    try:
        # ERROR: a command that only joins should not print Ray's notices.
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as error:
        first = next((line for line in str(error).splitlines() if line.strip()), repr(error)).strip()[:300]
        if os.environ.get("RAY_AUTH_MODE") != "token":
            first += " (a cluster with token authentication, as every store's own is, needs RAY_AUTH_MODE=token)"
        raise Sneakers23Error(f"cannot join the Ray cluster at {address}: {first}") from None


def _check_it_answers(address: str) -> None:
    """Ray waits minutes for a cluster address where nothing listens: look first."""
    host, _colon, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # not host:port (ray://…, say): Ray's own checks apply
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=JOIN_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise Sneakers23Error(f"cannot join the Ray cluster at {address}: nothing answers there "
                              f"({getattr(error, 'strerror', None) or error})") from None


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


class RayReplication:
    """Publishes committed changes to every node's cache through the replication actor.

    A publish that fails is logged, never raised: the sale or release is already committed, and the
    caches' anti-entropy picks it up within the resync period (an AccountChanged, which has no row
    to compare, the replicas' recheck of a session: serve/shoppers.py; a DrawFinished, the pages'
    recheck of their outcome: static/js/draws.js). Changes go only to a store
    that sells from the same database: with two stores on one machine, the cluster joined may be the
    other's.
    """

    def __init__(self, wait: bool = True, database_url: str | None = None):
        # wait: until the replication actor has the changes (a process about to exit, the CLI);
        # without it, publishing costs the caller nothing more than a submission.
        # database_url: the database the changes were committed to (None: do not check).
        self._database = None if database_url is None else database_identity(database_url)
        self._wait = wait
        self._replicator = None
        self._other_store = False  # the cluster's store sells from another database

    def publish(self, changes: Iterable[Change]) -> None:
        changes = list(changes)
        if not changes or self._other_store:
            return
        if self._replicator is None and not self._find_replicator():
            return  # no store running on this cluster: the database alone is the record
        try:
            sent = self._replicator.publish.remote(changes)
            if self._wait:
                ray.get(sent, timeout=PUBLISH_TIMEOUT_S)
        except Exception as error:
            log.warning("could not publish %d change(s), the caches will heal by resync: %s", len(changes), error)
            self._replicator = None

    def _find_replicator(self) -> bool:
        found = replicator()
        if found is None:
            return False
        if self._database is None:
            self._replicator = found
            return True
        theirs = database_of(found)
        if theirs is None:
            return False  # asked again at the next publish; the caches heal by resync meanwhile
        if database_identity(theirs) != self._database:
            self._other_store = True
            log.warning("the store on this Ray cluster sells from %s, another database: changes are not "
                        "published to it (a store on this database picks them up by resync)", theirs)
            return False
        self._replicator = found
        return True
