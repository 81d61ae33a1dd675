"""Deploying the store on Ray Serve, and finding it there: every Serve call of `sneakers23 serve`,
and every private Ray API it uses (`serve.context._get_global_client`, its application statuses,
the controller's graceful shutdown), are in this file, so that a Ray upgrade is checked here."""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import ray
from ray import serve
from ray.serve.schema import ApplicationStatus

from sneakers23 import assembly, cluster
from sneakers23.errors import Sneakers23Error
from sneakers23.serve.admin import build_admin
from sneakers23.serve.local_cluster import shown_host
from sneakers23.serve.sockets import build_channels
from sneakers23.serve.storefront import build_store
from sneakers23.serve.stopping import StopRequested
from sneakers23.settings import Settings

APPS = (("store", "/", build_store), ("channels", "/product_socket", build_channels), ("admin", "/admin", build_admin))
STORE_APP = APPS[0][0]
APP_NAMES = [name for name, _prefix, _build in APPS]

DEPLOY_TIMEOUT_S = 180.0  # for the applications to run
CALL_TIMEOUT_S = 10.0  # for one call to a running cluster


@dataclass
class RunningStore:
    """A store found on a cluster: where it answers and what it sells from."""

    url: str | None
    database: str | None
    applications: list[str]

    def describe(self) -> str:
        where = f"open at {self.url}" if self.url else "its web applications not running"
        return f"{where}, selling from {self.database or 'an unknown database'}"


def deploy(settings: Settings, host: str, port: int, check: Callable[[], None]) -> float:
    """Replication, Serve and the three applications (store, channels, admin); returns the store application's deploy time,
    by which a later stop knows the applications are still its own."""
    step = "its actors"  # (what failed, in the one line a failure says)
    try:
        cluster.check_database_fits(settings)
        assembly.start_store_actors(settings, while_waiting=check)
        check()
        step = "Serve"
        _start_serve(host, port)
        args = settings.model_dump()
        # The links in letters to shoppers lead where the store listens, unless ops say otherwise.
        args["public_url"] = settings.public_url or f"http://{shown_host(host)}:{port}"
        args["mail_file"] = str(Path(settings.mail_file).resolve())  # (a replica's directory is Ray's)
        step = "its applications"
        serve.run_many([serve.RunTarget(build(args), name=name, route_prefix=route_prefix)
                        for name, route_prefix, build in APPS],
                       wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
        wait_running(check)
        return deployed_at()
    except (Sneakers23Error, StopRequested, SystemExit):
        raise
    except Exception as error:  # Ray's own failures arrive with pages of traceback: one line
        raise Sneakers23Error(f"the store could not start ({step}): {last_line(error)}") from None


def _start_serve(host: str, port: int) -> None:
    """Serve's controller and its proxies. On a busy machine Serve may replace a proxy that was
    slow to start (it kills it and starts another): `serve.start` then fails on the one it killed,
    while the controller goes on (a store's start failed so in CI22 and CI25). Asked again, it
    finds that controller; that the store answers is waited for after the deploy, as always."""
    try:
        serve.start(http_options={"host": host, "port": port})
    except ray.exceptions.RayActorError:
        if not _serve_controller_running():  # (a controller that died is a failure of its own)
            raise
        serve.start(http_options={"host": host, "port": port})


def _serve_controller_running() -> bool:
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def application_statuses() -> dict:
    """Each Serve application's status (`status`, `message`, `deployment_timestamp`), by name; none
    without Serve. (`serve.status()` says the same with every replica's details, which its client
    validates again: 30 ms of CPU a call against 0.5, and the running store asks every 2 s.)"""
    client = serve.context._get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {}
    return {overview.name: overview.app_status for overview in client.list_serve_statuses()}


def wait_running(check: Callable[[], None]) -> None:
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while True:
        check()
        statuses = application_statuses()
        failed = [f"{name}: {statuses[name].message}" for name, _prefix, _build in APPS
                  if name in statuses and statuses[name].status == ApplicationStatus.DEPLOY_FAILED]
        if failed:
            raise Sneakers23Error(f"the store could not start: {failed[0].strip()[:300]}")
        if all(name in statuses and statuses[name].status == ApplicationStatus.RUNNING for name, _p, _b in APPS):
            return
        if time.monotonic() > deadline:
            raise Sneakers23Error(f"the store's applications were not running after {DEPLOY_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def remove_applications(check: Callable[[], None]) -> None:
    """Delete the store's applications and wait until their replicas are gone."""
    ours = [name for name, _prefix, _build in APPS]
    serve.context._get_global_client().delete_apps(ours, blocking=False)
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while set(application_statuses()) & set(ours):
        check()
        if time.monotonic() > deadline:
            raise Sneakers23Error(f"the store's applications were still there after {DEPLOY_TIMEOUT_S:.0f}s")
        time.sleep(0.5)


def deployed_at() -> float | None:
    application = application_statuses().get(STORE_APP)
    return None if application is None else application.deployment_timestamp


def shut_down_serve_or_remove_applications(started_serve: bool) -> None:
    """Take the store's applications off a joined cluster without waiting for their replicas: they
    stay reachable for Serve's drain period (30 s), so that HAProxy takes them out first, and the
    controller finishes the job by itself. Serve itself goes too when this store started it and
    nothing else runs on it."""
    client = serve.context._get_global_client()
    if started_serve and set(application_statuses()) <= set(APP_NAMES):
        ray.get(client._controller.graceful_shutdown.remote(wait=False), timeout=CALL_TIMEOUT_S)
    else:
        client.delete_apps(APP_NAMES, blocking=False)


def running_store(address: str) -> RunningStore | None:
    """The store running on the joined cluster, if any: its applications or its replication."""
    applications = sorted(set(application_statuses()) & {name for name, _prefix, _build in APPS})
    replicator = cluster.replicator()
    if not applications and replicator is None:
        return None
    database = cluster.database_of(replicator) if replicator is not None else None
    http = serve_http_address()
    url = None
    if http is not None and applications:
        host = address.rsplit(":", 1)[0] if http[0] in ("0.0.0.0", "::", "") else http[0]
        url = f"http://{host}:{http[1]}/"
    return RunningStore(url, database, applications)


def serve_http_address() -> tuple[str, int] | None:
    """The host and port Serve listens on in the joined cluster, or None where Serve is not running."""
    client = serve.context._get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    return client.http_config.host, client.http_config.port


def channel_replicas(timeout_s: float = 10.0) -> list[dict]:
    """What each channel replica of the deployed store says of itself (its sockets, its loop's
    stalls: `ShopperSockets.sockets`); none where no store is deployed or none answers in time."""
    try:
        handle = serve.get_app_handle("channels")
        try:  # (a router of its own loop: with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in this process's
            handle._init(_run_router_in_separate_loop=True)  # environment, a blocking call has none)
        except RuntimeError:  # (this process's handle, made already)
            pass
        replies = handle.broadcast("sockets").results(timeout_s=timeout_s, return_exceptions=True)
    except Exception:  # (no Serve, no such application: nothing to show)
        return []
    return sorted((reply for reply in replies if isinstance(reply, dict)), key=lambda reply: reply["node_id"])


def last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else repr(error))[:300]
