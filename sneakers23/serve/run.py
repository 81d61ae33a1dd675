"""`sneakers23 serve`: the whole store on this machine (or on the cluster at RAY_ADDRESS)."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
import signal
import socket
import threading

import click
import ray
from ray import serve

from sneakers23 import cluster
from sneakers23.actors import NAMESPACE
from sneakers23.actors.replicator import start_replication
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.serve.app import build_channels, build_store
from sneakers23.settings import Settings

APPS = (("store", "/", build_store), ("channels", "/product_socket", build_channels))

# The request path, chosen by measurement (bench/page_throughput.py, bench/channel_fanout.py; see
# docs/performance.md): HAProxy in front of replicas that serve HTTP and WebSockets themselves,
# with Serve's throughput settings. Ray reads these when the cluster starts; a cluster that
# `serve` only joins keeps the path it was started with (cluster.yaml sets the same).
REQUEST_PATH = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
}


WANTED_OPEN_FILES = 1_048_576  # HAProxy asks for 2.5 per allowed connection


def _raise_open_file_limit() -> int:
    """One descriptor per socket (two in HAProxy): raise the limit for us and the Ray processes we
    start, as far as we may (root may raise the hard limit too). Returns the limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (max(hard, WANTED_OPEN_FILES), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def run_store(settings: Settings, host: str, port: int, ready: threading.Event | None = None,
              stop: threading.Event | None = None) -> None:
    """Run the store until Ctrl-C (or `stop`), then take down what this call started."""
    inventory = Inventory(settings)
    inventory.upgrade_schema()
    if not inventory.is_seeded():
        click.echo(f"seeded {inventory.seed()} items into an empty database")
    inventory.close()
    if not settings.secret_key:
        settings = settings.model_copy(update={"secret_key": secrets.token_urlsafe(32)})

    joined = cluster.join(settings)
    started_ray = not joined
    if started_ray:
        if not _port_is_free(host, port):
            raise Sneakers23Error(f"port {port} on {host} is in use: pick another with --port")
        click.echo("starting a local Ray cluster")
        limit = _raise_open_file_limit()
        # Ray jobs (`ray job submit -- python -m sneakers23.jobs.drop …`) get this Python first.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        for name, value in REQUEST_PATH.items():
            os.environ.setdefault(name, value)
        # Every open socket is a connection in HAProxy (default limit 4,096), which wants 2.5
        # descriptors for each one it may hold.
        os.environ.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(max(1024, min(200_000, (limit - 1024) * 2 // 5))))
        ray.init(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING, include_dashboard=True)
    try:
        _deploy(settings, host, port)
        click.echo(f"Sneakers23 is open at http://{host}:{port}/  (Ctrl-C to close)")
        if ready is not None:
            ready.set()
        _wait_for_stop(stop)
    finally:
        click.echo("closing the store")
        if started_ray:  # everything goes with the cluster this call started
            ray.shutdown()
        else:  # a cluster we only joined: take back our applications, leave the rest running
            for name, _prefix, _build in APPS:
                try:
                    serve.delete(name)
                except Exception:
                    pass


def _deploy(settings: Settings, host: str, port: int) -> None:
    try:
        start_replication(settings)
        serve.start(http_options={"host": host, "port": port})
        args = settings.model_dump()
        for name, route_prefix, build in APPS:
            serve.run(build(args), name=name, route_prefix=route_prefix, blocking=False)
        for name, _prefix, _build in APPS:
            serve.get_app_handle(name)  # waits for the app to be running
    except Sneakers23Error:
        raise
    except Exception as error:  # Ray's own failures arrive with pages of traceback: one line
        first = next((line for line in reversed(str(error).splitlines()) if line.strip()), repr(error))
        raise Sneakers23Error(f"the store could not start: {first.strip()[:300]}") from None


def _wait_for_stop(stop: threading.Event | None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
