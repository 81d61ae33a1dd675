"""A Ray cluster of the store's own, on this machine, for `sneakers23 serve`.

Why `ray start` in a session of its own rather than `ray.init()`: a local `ray.init()` puts the GCS
and the raylet in the store's process group, so a SIGTERM to that group (a service manager, a
container stop) killed them at the same moment as the store. The store's own Ray client could then
abort, and HAProxy, whose parent died before it could stop it, was left running with the store's
port. Here only the store gets the signal, and it stops the cluster in order: the raylet first (it
takes its workers down with their process groups, HAProxy among them), then the rest, then
whatever is left.

Every process of the cluster carries the session id, which is how it is found: never by name, so
another store or a test session's cluster on this machine is left alone. The store is also made a
child subreaper, so a process that leaves the session (a Ray job's driver does) comes back to it.

The fixed ports a Ray cluster or Serve would take (the dashboard's, HAProxy's stats and metrics,
Serve's fallback proxy, ...) are chosen here: the usual port when it is free, another free one
otherwise. Two stores can then run side by side, each with its own cluster.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sneakers23.errors import Sneakers23Error

# The request path, chosen by measurement (bench/page_throughput.py, bench/channel_fanout.py; see
# docs/performance.md): HAProxy in front of replicas that serve HTTP and WebSockets themselves, with
# Serve's throughput settings. Ray reads these when the cluster starts (cluster.yaml sets the same).
REQUEST_PATH = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
}

# A starting proxy (Serve's HAProxy manager) gets as long to answer Serve's readiness check as Serve
# gives HAProxy to start (30 s), and its worker's start before that, not 5 s: on a busy machine
# Serve killed it at 5 s and started another, and the store's start failed on the one it killed
# (CI22, CI25, CI26). cluster.yaml sets the same on the head.
SERVE_PATIENCE = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "45"}

# The store's Ray workers (its web replicas, node caches and sales actors) at the niceness of the
# node's other processes, not Ray's 15 (meant for batch tasks that must not slow the raylet): at 15,
# any process of normal priority on the node (PostgreSQL, a backup, a test suite beside it) took the
# CPU before them. A queued rehearsal beside six busy loops: page p50 14.8 s at 15, 0.2 s at 0
# (docs/operations.md, "What runs where"). cluster.yaml sets the same on every node.
WORKER_PRIORITY = {"RAY_worker_niceness": "0"}

WANTED_OPEN_FILES = 1_048_576  # HAProxy asks for 2.5 per allowed connection
START_TIMEOUT_S = 120.0

# Ports a cluster listens on: each gets its usual number where that is free. Those given as
# environment variables are read by Serve's processes; the others are `ray start` options.
SERVE_PORTS = {
    "RAY_SERVE_HAPROXY_STATS_PORT": 8404,
    "RAY_SERVE_HAPROXY_METRICS_PORT": 9101,
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": 8500,
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": 9500,
}
RAY_PORTS = {
    "--port": 6379,  # the GCS: the cluster's address
    "--dashboard-port": 8265,  # the dashboard, which takes Ray jobs
    "--dashboard-agent-listen-port": 52365,
    "--ray-client-server-port": 10001,
}

PR_SET_CHILD_SUBREAPER = 36


class PortTaken(Exception):
    """A port chosen for the cluster was taken before Ray could bind it."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _port(usual: int, taken: set[int]) -> int:
    """The usual port when nothing holds it, else one the system picks."""
    if usual not in taken and port_is_free("0.0.0.0", usual):
        taken.add(usual)
        return usual
    while True:
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def shown_host(host: str) -> str:
    """Where a client reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host


def raise_open_file_limit() -> int:
    """One descriptor per socket (two and a half in HAProxy): raise the limit for us and the Ray
    processes we start, as far as we may (root may raise the hard limit too). Returns the limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (max(hard, WANTED_OPEN_FILES), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def become_subreaper() -> None:
    """Orphans among our descendants come to us instead of init, so that a stop finds them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@dataclass
class LocalCluster:
    address: str  # the GCS, host:port: what `ray.init(address=...)` and the CLI join
    dashboard_url: str
    session_id: int  # every process of the cluster carries it
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, check: Callable[[], None] = lambda: None, attempts: int = 3,
              host: str = "127.0.0.1") -> "LocalCluster":
        """Start a head node in a session of its own; returns once it takes clients. `check` is
        called while it waits, and may raise to give up: the cluster is then stopped. Its dashboard
        (which takes Ray jobs) listens on `host`, the store's own address."""
        from sneakers23.cluster import use_token_authentication

        open_files = raise_open_file_limit()
        use_token_authentication(create=True)
        for attempt in range(1, attempts + 1):
            try:
                return cls._start(open_files, check, host)
            except PortTaken:  # another cluster took a port between our look and Ray's bind
                if attempt == attempts:
                    raise Sneakers23Error("Ray did not start: the ports chosen for it were taken meanwhile, "
                                          f"{attempts} times") from None

    @classmethod
    def _start(cls, open_files: int, check: Callable[[], None], host: str) -> "LocalCluster":
        from ray._private.services import get_node_ip_address

        from sneakers23.serve.guards import FALLBACK_PROXY_CALLBACK

        taken: set[int] = set()
        ports = {name: _port(usual, taken) for name, usual in {**RAY_PORTS, **SERVE_PORTS}.items()}
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        for name, value in REQUEST_PATH.items():
            env.setdefault(name, value)  # a benchmark may choose another request path
        for name, value in {**SERVE_PATIENCE, **WORKER_PRIORITY}.items():
            env.setdefault(name, value)
        # HAProxy with the store's edge rules, and ended with the Serve process that starts it.
        env.setdefault("RAY_SERVE_HAPROXY_BINARY_PATH", str(Path(sys.executable).with_name("sneakers23-haproxy")))
        # The fallback proxy behind HAProxy with a replica's limits (serve/guards.py).
        env.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", FALLBACK_PROXY_CALLBACK)
        # Every open socket is a connection in HAProxy (default limit 4,096).
        env.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(max(1024, min(200_000, (open_files - 1024) * 2 // 5))))
        # Ray jobs (`ray job submit -- python -m sneakers23.jobs.drop …`) get this Python first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update({name: str(ports[name]) for name in SERVE_PORTS})

        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--disable-usage-stats",
                   "--include-dashboard=true", f"--dashboard-host={host}",
                   *(f"{option}={ports[option]}" for option in RAY_PORTS)]
        with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: Ray's daemons inherit it
            starter = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            cluster = cls(f"{get_node_ip_address()}:{ports['--port']}",
                          f"http://{shown_host(host)}:{ports['--dashboard-port']}", starter.pid, ports)
            try:
                deadline = time.monotonic() + START_TIMEOUT_S
                while starter.poll() is None:
                    check()
                    if time.monotonic() > deadline:
                        raise Sneakers23Error(f"Ray did not start within {START_TIMEOUT_S:.0f}s")
                    time.sleep(0.1)
            except BaseException:
                cluster.stop()
                raise
            if starter.returncode == 0:
                return cluster
            cluster.stop()
            output.seek(0)
            said = output.read()
        if "already in use" in said or "valid port" in said:
            raise PortTaken(said)
        last = [line.strip() for line in said.splitlines() if line.strip()]
        raise Sneakers23Error(f"Ray did not start (`ray start` exited with {starter.returncode}): "
                              f"{last[-1][:300] if last else 'no output'}")

    def processes(self) -> list[int]:
        """The cluster's live processes: its session's, and our own descendants (the orphans that
        came back to us), except us."""
        return sorted(self._processes())

    def _processes(self) -> dict[int, str]:
        table = _process_table()
        ours = {pid for pid, (_ppid, sid, _state, _name) in table.items() if sid == self.session_id}
        ours |= _descendants(os.getpid(), table)
        ours.discard(os.getpid())
        return {pid: table[pid][3] for pid in ours if pid in table and table[pid][2] != "Z"}

    def alive(self) -> bool:
        """The cluster still runs: its GCS and raylet are there."""
        return {"gcs_server", "raylet"} <= set(self._processes().values())

    def reap(self) -> None:
        """Collect the cluster's processes that have exited (they are our children: we are their
        subreaper), so that none stays a zombie."""
        _reap()

    def stop(self, grace_s: float = 2.0) -> int:
        """Stop every process of the cluster, as `ray stop` would but only ours: the raylets first
        (they stop their workers, and HAProxy with them), then the rest but the GCS, then the GCS;
        what is still there after the grace period is killed. Returns how many had to be killed.
        (Ray's autoscaler monitor, stopped after the GCS, waits on the GCS for the whole grace
        period: 2 s of every stop, before.)"""
        raylets = [pid for pid, name in self._processes().items() if name == "raylet"]
        _signal_all(raylets, signal.SIGTERM)
        _wait_gone(lambda: [pid for pid in self.processes() if pid in raylets], grace_s)
        rest = [pid for pid, name in self._processes().items() if name != "gcs_server"]
        _signal_all(rest, signal.SIGTERM)
        _wait_gone(lambda: [pid for pid in self.processes() if pid in rest], grace_s)
        _signal_all(self.processes(), signal.SIGTERM)
        left = _wait_gone(self.processes, grace_s)
        _wait_gone(self.processes, grace_s, then=signal.SIGKILL)
        self._forget_address()
        return len(left)

    def _forget_address(self) -> None:
        """`ray start` noted our address for `ray.init(address="auto")`: take it back, as `ray stop`
        does, unless another cluster has noted its own since."""
        try:
            from ray._common.utils import reset_ray_address
            from ray._private.utils import read_ray_address

            if read_ray_address() == self.address:
                reset_ray_address()
        except Exception:
            pass


@contextmanager
def one_start_at_a_time(check: Callable[[], None] = lambda: None):
    """Two stores starting together would pick the same free ports: hold this from choosing the
    ports until the last of them is bound (Serve binds HAProxy's when it deploys). `check` is
    called while it waits for its turn, and may raise to give up."""
    with open(Path(tempfile.gettempdir()) / "sneakers23-ray-start.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                check()
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _process_table() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (parent pid, session id, state, name), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (name) state ppid pgrp session ...": the name may hold spaces and parentheses
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        state, ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        table[int(entry)] = (int(ppid), int(session), state, name)
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, str, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap() -> None:
    """Collect our exited children (orphans that came to us among them), so none stays a zombie."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wait_gone(still_there: Callable[[], list[int]], timeout_s: float, then: int | None = None) -> list[int]:
    """Wait until `still_there()` is empty or the time is up; returns what is still there. With
    `then`, that signal goes (again) to whatever is there on every look."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap()
        left = still_there()
        if then is not None:
            _signal_all(left, then)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
