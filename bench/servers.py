"""Start and stop the store (`sneakers23 serve`, in a request-path mode) and the bare baselines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Request paths Ray Serve 2.60 offers (see docs/performance.md for what each measured).
MODES = {
    # Serve's default: its proxy actor relays every request and every socket frame
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    # HAProxy in front, replicas serve HTTP themselves
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    # ... and user code on the replica's own event loop, fewer logs, GC frozen after start-up
    "haproxy+throughput": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    # no HAProxy: the throughput settings turn on direct ingress, so each replica listens on a port
    # of its own (30000 and up) and the sockets connect to the channel replica's port (one
    # descriptor per socket in the server, where HAProxy needs two and a half)
    "direct": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}

DIRECT_PORTS = range(30000, 30020)  # where Serve's direct ingress puts the first replicas


def socket_url(mode: str, port: int) -> str:
    """Where the benchmark's sockets connect: the store's port, or in direct mode the channel
    replica's own port (the one that answers a join)."""
    if mode != "direct":
        return f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0"
    for candidate in DIRECT_PORTS:
        url = f"ws://127.0.0.1:{candidate}/product_socket/websocket?vsn=2.0.0"
        try:
            wait_socket(url, timeout=1)
            return url
        except RuntimeError:
            continue
    raise RuntimeError("no channel replica answers on the direct-ingress ports")


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Process:
    def __init__(self, args: list[str], env: dict, log_name: str):
        self.env = env or {}
        self.log = open(Path(tempfile.gettempdir()) / f"sneakers23-bench-{log_name}.log", "w")
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.log_path = self.log.name

    def stop(self, timeout: float = 120) -> None:
        """Stop it by its process id: Ctrl-C first, as a person would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_store(mode: str, database_url: str, port: int, extra_env: dict | None = None) -> Process:
    # The load comes from this machine's one address: the edge's per-address caps are lifted (the
    # deadlines stay; bench/hostile.py measures the caps themselves).
    env = {**os.environ, **MODES[mode], "SNEAKERS23_REQUESTS_PER_ADDRESS_PER_SECOND": "0",
           "SNEAKERS23_CONNECTIONS_PER_ADDRESS": "0", **(extra_env or {}),
           "SNEAKERS23_DATABASE_URL": database_url,
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="s23bench-", dir="/tmp")}
    store = Process([str(BIN / "sneakers23"), "serve", "--port", str(port)], env, f"store-{mode}")
    wait_http(f"http://127.0.0.1:{port}/healthz")
    wait_socket(f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0")
    return store


def wait_socket(url: str, timeout: float = 60) -> None:
    """Until a product channel answers a join (the socket route can come up after the pages)."""
    import json

    import websockets.sync.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with websockets.sync.client.connect(url, open_timeout=5) as ws:
                ws.send(json.dumps(["1", "1", "product:1", "phx_join", {}]))
                if '"ok"' in ws.recv(timeout=5):
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer a join")


def start_bare_page(page_file: Path, port: int) -> Process:
    env = {**os.environ, "BARE_PAGE_FILE": str(page_file)}
    bare = Process([str(BIN / "uvicorn"), "bench.bare_page:app", "--port", str(port), "--log-level", "warning"],
                   env, "bare-page")
    wait_http(f"http://127.0.0.1:{port}/")
    return bare


def start_bare_serve_page(mode: str, page_file: Path, port: int) -> Process:
    env = {**os.environ, **MODES[mode], "RAY_TMPDIR": tempfile.mkdtemp(prefix="s23bench-", dir="/tmp")}
    server = Process([sys.executable, "-m", "bench.bare_serve_page", str(page_file), str(port)], env,
                     f"bare-serve-{mode}")
    wait_http(f"http://127.0.0.1:{port}/")
    return server


def seeded_shop(prefix: str):
    """A fresh SQLite shop in a directory of its own: the original's seed (23), product 1 on sale.
    Returns (its directory, its database URL, its inventory)."""
    from sneakers23.inventory import Inventory
    from sneakers23.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    inventory = Inventory(Settings(database_url=database_url))
    inventory.upgrade_schema()
    inventory.seed(random_seed=23)
    inventory.release(1)
    return workdir, database_url, inventory
