"""`sneakers23 serve`: the whole store on this machine (or on the cluster at RAY_ADDRESS)."""

from __future__ import annotations

import logging
import secrets
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
        ray.init(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING, include_dashboard=True)
    try:
        start_replication(settings)
        serve.start(http_options={"host": host, "port": port})
        args = settings.model_dump()
        for name, route_prefix, build in APPS:
            serve.run(build(args), name=name, route_prefix=route_prefix, blocking=False)
        for name, _prefix, _build in APPS:
            serve.get_app_handle(name)  # waits for the app to be running
        click.echo(f"Sneakers23 is open at http://{host}:{port}/  (Ctrl-C to close)")
        if ready is not None:
            ready.set()
        _wait_for_stop(stop)
    finally:
        click.echo("closing the store")
        for name, _prefix, _build in APPS:
            try:
                serve.delete(name)
            except Exception:
                pass
        if started_ray:
            serve.shutdown()
            ray.shutdown()


def _wait_for_stop(stop: threading.Event | None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
