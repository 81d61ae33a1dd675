"""`sneakers23 serve`: the whole store, on a Ray cluster of its own or on one it is asked to join.

- By default it starts a cluster of its own on this machine (serve/local_cluster.py), so it never
  changes a store that it did not start, and a second store on the same machine runs beside the
  first. With `--address` (or RAY_ADDRESS) it joins that cluster instead; if a store already runs
  there it says where and stops, unless `--replace` asks it to take that store's place.
- The address it prints is one it has seen answer.
- Ctrl-C, SIGINT, SIGTERM or SIGHUP, to the process or to its process group, stop it cleanly, at
  any moment of its start-up too: on its own cluster every process it started goes, HAProxy
  included, and every port is freed; on a joined cluster it removes what it deployed, and only if
  that is still its own.

Here are the two ways to run it (its own cluster, a joined one); the Serve calls are in deploy.py,
the signals and the time-limited calls in stopping.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
import urllib.error
import urllib.request
from typing import Callable

import click
import ray

from sneakers23 import assembly, cluster
from sneakers23.actors.store_actors import stop_store_actors
from sneakers23.errors import Sneakers23Error
from sneakers23.serve.deploy import (CALL_TIMEOUT_S, deploy, deployed_at, last_line, remove_applications,
                                     running_store, serve_http_address, shut_down_serve_or_remove_applications)
from sneakers23.serve.stopping import StopRequested, StopSignals, TimeLimitedCall
from sneakers23.serve.local_cluster import (LocalCluster, become_subreaper, one_start_at_a_time, port_is_free,
                                            shown_host)
from sneakers23.settings import Settings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
ANSWER_TIMEOUT_S = 60.0  # for the printed address to answer, once deployed
WATCH_EVERY_S = 2.0  # how often a running store checks that its cluster and applications are there
LOST_AFTER = 3  # checks in a row without an answer before a joined cluster counts as lost
DISCONNECT_TIMEOUT_S = 2.0  # for our Ray client to leave a cluster we are about to stop
TIDY_TIMEOUT_S = 30.0  # for a store on a joined cluster to remove what it deployed


def run_store(settings: Settings, host: str | None, port: int | None, address: str | None = None,
              replace: bool = False, release: tuple[int, ...] = ()) -> None:
    """Run the store until a signal asks it to stop, then take down what this call started.
    `release`: products put on sale once the database is ready (before the caches load it)."""
    signals = StopSignals()
    signals.install()
    if replace and not address:
        raise click.UsageError("--replace replaces the store on a cluster given with --address")
    if not settings.secret_key:  # cookies then last as long as this store
        settings = settings.model_copy(update={"secret_key": secrets.token_urlsafe(32)})
    runner = _OwnCluster(settings, host, port) if not address else _JoinedCluster(settings, host, port, address, replace)
    runner.release = tuple(release)
    try:
        runner.start(signals)
        click.echo(f"Sneakers23 is open at {runner.url}  (Ctrl-C to close)")
        click.echo(f"the admin dashboard is at {runner.url.rstrip('/')}/admin" if settings.admin_password else
                   "the admin dashboard is off: set SNEAKERS23_ADMIN_PASSWORD to open it")
        if not settings.smtp_url:
            click.echo(f"letters to shoppers (sign-up and reset links) are written to {Path(settings.mail_file).resolve()}"
                       ": set SNEAKERS23_SMTP_URL to send them")
        runner.watch(signals.requested)
    except StopRequested:
        pass
    except SystemExit as exit_:
        if exit_.code != signal.SIGTERM:  # Ray's own SIGTERM handler, in place while `ray.init` runs
            raise
    finally:
        if runner.started_anything:
            click.echo("closing the store")
            started = time.monotonic()
            runner.close()
            click.echo(f"closed in {time.monotonic() - started:.1f}s")
        else:
            runner.close()
    # Once a store it started is closed, the process ends at once: a call into a cluster that went
    # away may still hang (Ray's own exit would wait for it), and Python's teardown of Ray's client
    # takes another second of every stop otherwise, with nothing of ours left to tear down.
    if TimeLimitedCall.stuck or runner.started_anything:
        if not TimeLimitedCall.stuck:  # (the stuck call may hold a handler's lock)
            logging.shutdown()
        if runner.lost is not None:
            click.echo(f"sneakers23: {runner.lost}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if runner.lost else 0)
    if runner.lost is not None:
        raise Sneakers23Error(runner.lost)


def _prepare_database(settings: Settings, release: tuple[int, ...] = ()) -> None:
    inventory = assembly.database_inventory(settings)
    try:
        inventory.upgrade_schema()
        if not inventory.is_seeded():
            click.echo(f"seeded {inventory.seed()} items into an empty database")
        for product_id in release:
            if inventory.release(product_id).newly_released:  # (a running store's caches heal it in)
                click.echo(f"product {product_id} released")
    finally:
        inventory.close()


def _wait_until_it_answers(url: str, check: Callable[[], None]) -> None:
    """The printed address must be one that answers: /healthz, until 200."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            with urllib.request.urlopen(f"{url}healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except OSError as error:
            last = str(getattr(error, "reason", error))
        time.sleep(0.2)
    raise Sneakers23Error(f"the store was deployed, but {url} does not answer ({last})")


def _url(host: str, port: int) -> str:
    return f"http://{shown_host(host)}:{port}/"


class _Runner:
    url: str | None = None
    lost: str | None = None  # why the store closed by itself, if it did
    _deployed_at: float | None = None
    release: tuple[int, ...] = ()  # products to put on sale once the database is ready

    def __init__(self) -> None:
        self._call = TimeLimitedCall()

    @property
    def started_anything(self) -> bool:
        raise NotImplementedError

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(WATCH_EVERY_S):
            self.lost = self._problem()
            if self.lost:
                return

    def _problem(self) -> str | None:
        raise NotImplementedError

    def _still_ours(self) -> bool:
        return self._call(CALL_TIMEOUT_S, deployed_at) == self._deployed_at

    def _leave_ray(self) -> None:
        if ray.is_initialized():
            try:
                self._call(DISCONNECT_TIMEOUT_S, ray.shutdown)
            except Exception:
                pass


class _OwnCluster(_Runner):
    """The store on a Ray cluster it starts, and stops entirely."""

    def __init__(self, settings: Settings, host: str | None, port: int | None):
        super().__init__()
        self.settings = settings
        self.host = host or DEFAULT_HOST
        self.port = port or DEFAULT_PORT
        self.url = _url(self.host, self.port)
        self.local: LocalCluster | None = None
        self._replaced = False

    @property
    def started_anything(self) -> bool:
        return self.local is not None

    def start(self, signals: StopSignals) -> None:
        _prepare_database(self.settings, self.release)
        signals.check()
        become_subreaper()
        with one_start_at_a_time(signals.check):
            if not port_is_free(self.host, self.port):
                raise Sneakers23Error(_port_taken(self.host, self.port))
            click.echo("starting a Ray cluster of its own")
            self.local = LocalCluster.start(check=signals.check, host=self.host)
            cluster.join_address(self.local.address)
            signals.install()
            signals.check()
            click.echo(f"Ray cluster at {self.local.address}; its dashboard (Ray jobs) at {self.local.dashboard_url}")
            self._deployed_at = deploy(self.settings, self.host, self.port, signals.check)
            _wait_until_it_answers(self.url, signals.check)

    def _problem(self) -> str | None:
        self.local.reap()
        if not self.local.alive():
            return "the store's Ray cluster stopped under it: the store is closed"
        if not self._replaced:
            try:
                self._replaced = not self._still_ours()
            except Exception:
                return None  # a slow answer: the cluster's processes are there, ask again later
            if self._replaced:
                click.echo("the store's applications on this Ray cluster were replaced by someone else (`sneakers23 "
                           "serve --replace`, `serve deploy`): this process still runs the cluster they are on, and "
                           "stopping it stops them too")
        return None

    def close(self) -> None:
        self._leave_ray()  # first: our Ray client must not see its cluster die under it
        if self.local is not None:
            self.local.stop()


class _JoinedCluster(_Runner):
    """The store on a cluster it joins: it changes a store running there only when asked to
    replace it, and on its way out removes only what it deployed and still owns."""

    def __init__(self, settings: Settings, host: str | None, port: int | None, address: str, replace: bool):
        super().__init__()
        self.settings = settings
        self.host, self.port = host, port
        self.address = address
        self.replace = replace
        self._touched = False  # it began to deploy: from then on, its stop has things to remove
        self._started_serve = False
        self._unanswered = 0

    @property
    def started_anything(self) -> bool:
        return self._touched

    def start(self, signals: StopSignals) -> None:
        cluster.join_address(self.address)
        signals.install()
        signals.check()
        running = running_store(self.address)
        if running is not None and not self.replace:
            raise Sneakers23Error(
                f"a store already runs on the Ray cluster at {self.address}, {running.describe()}: it is left as "
                "it is (to take its place, add --replace)")
        self.host, self.port = self._listening_address()
        self.url = _url(self._node_host(), self.port)
        _prepare_database(self.settings, self.release)
        signals.check()
        self._started_serve = serve_http_address() is None
        self._touched = True
        if running is not None:
            click.echo(f"replacing the store on the Ray cluster at {self.address} ({running.describe()}): "
                       "Serve drains its replicas first (up to 30 s)")
            # In this order: a replica of the old store that outlived its replication would start
            # that again, with the old store's settings.
            remove_applications(signals.check)
            stop_store_actors()
        self._deployed_at = deploy(self.settings, self.host, self.port, signals.check)
        _wait_until_it_answers(self.url, signals.check)

    def _listening_address(self) -> tuple[str, int]:
        """Serve keeps the HTTP address it started with: a store joining a cluster where Serve runs
        listens there, and says so plainly when asked for another."""
        http = serve_http_address()
        if http is None:
            return self.host or DEFAULT_HOST, self.port or DEFAULT_PORT
        if (self.port is not None and self.port != http[1]) or (self.host is not None and self.host != http[0]):
            asked = f"{self.host or http[0]}:{self.port or http[1]}"
            raise Sneakers23Error(
                f"Serve on the Ray cluster at {self.address} already listens on {http[0]}:{http[1]} and cannot "
                f"move to {asked}: leave out --host and --port, or give --host {http[0]} --port {http[1]}")
        return http

    def _node_host(self) -> str:
        """Where to reach the proxy: the listening host, or for 0.0.0.0 the joined node's address."""
        if self.host not in ("0.0.0.0", "::", ""):
            return self.host
        return ray.util.get_node_ip_address()

    def _problem(self) -> str | None:
        try:
            still_ours = self._still_ours()
        except Exception:
            self._unanswered += 1
            if self._unanswered < LOST_AFTER:
                return None  # a busy controller: ask again
            return f"lost the Ray cluster at {self.address}: the store is closed"
        self._unanswered = 0
        if not still_ours:
            return (f"the store's applications on the Ray cluster at {self.address} were replaced or deleted by "
                    "someone else: this store is closed")
        return None

    def close(self) -> None:
        if self._touched and ray.is_initialized():
            try:
                self._call(TIDY_TIMEOUT_S, self._tidy)
            except Exception as error:  # the cluster went away: nothing of ours is left there
                click.echo(f"could not tidy the cluster up: {last_line(error)}", err=True)
        if not TimeLimitedCall.stuck:  # (a leave would wait for the tidy-up that never came back)
            self._leave_ray()

    def _tidy(self) -> None:
        if self._deployed_at is not None and deployed_at() != self._deployed_at:
            click.echo("the store on the cluster is no longer this one's: leaving it as it is")
            return
        shut_down_serve_or_remove_applications(self._started_serve)
        stop_store_actors()
        click.echo("its applications leave the cluster once Serve has drained them (up to 30 s)")


def _port_taken(host: str, port: int) -> str:
    """Says what holds the port when it is a store (its /healthz answers), so the user knows which."""
    url = _url(host, port)
    try:
        with urllib.request.urlopen(f"{url}healthz", timeout=2) as answer:
            if "node_id" in json.loads(answer.read() or b"{}"):
                return f"a store is already open at {url}: stop it, or give this one another --port"
    except (OSError, ValueError):
        pass
    return f"port {port} on {host} is in use: pick another with --port"
