"""`sneakers23 serve`, the README's run command, as a new user runs it: on an empty SQLite file, with
no Ray running (its own local cluster, through the chosen request path: HAProxy in front of
replicas that serve HTTP themselves), a release from a second terminal reaching an open socket,
and Ctrl-C taking down everything it started."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import websockets.sync.client

from tests.support.ports import free_port
from tests.support.waiting import wait_for

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")


def processes_under(directory: str) -> list[int]:
    """Ids of the processes whose command line names the directory (Ray's own processes do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if directory.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def haproxy_under(directory: str) -> list[int]:
    return [pid for pid in processes_under(directory)
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("haproxy")]


def store_cluster_address(ray_dir: str) -> str:
    """The address of the cluster that `serve` started: Ray notes its GCS port in the session folder."""
    from ray._private.services import get_node_ip_address

    port_file = next((Path(ray_dir) / "ray" / "session_latest").glob("gcs_server_port_*"))
    return f"{get_node_ip_address()}:{port_file.read_text().strip()}"


def test_serve_runs_the_store_on_sqlite_and_ctrl_c_takes_it_all_down(tmp_path):
    port = free_port()
    ray_dir = tempfile.mkdtemp(prefix="s23run-", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "SNEAKERS23_"))}
    # "none": start a cluster of its own even though the test session's is running on this machine
    # (a user's `auto` would join that one).
    env.update({"RAY_TMPDIR": ray_dir, "SNEAKERS23_DATABASE_URL": f"sqlite:///{tmp_path / 'sneakers23.db'}",
                "SNEAKERS23_CLUSTER": "none",
                # HAProxy's files under the same folder, so its process is found (and cleaned up) too
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{ray_dir}/haproxy/haproxy.cfg",
                "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{ray_dir}/haproxy/admin.sock",
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": f"{ray_dir}/haproxy/state"})
    store = subprocess.Popen([str(SNEAKERS23), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in store.stdout], daemon=True).start()
    said: list[str] = []

    def said_so(text: str) -> bool:
        while not lines.empty():
            said.append(lines.get())
        return any(text in line for line in said)

    try:
        wait_for(lambda: said_so(f"Sneakers23 is open at http://127.0.0.1:{port}/") or store.poll() is not None,
                 timeout=180, interval=0.2, what="the store to open")
        assert store.poll() is None, "".join(said)
        assert said_so("seeded 26 items into an empty database")

        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<title>Sneakers23</title>" in page.text
        assert page.headers["cache-control"] == "no-store, must-revalidate"
        assert "product-soon-1" in page.text

        url = f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0"
        with websockets.sync.client.connect(url, open_timeout=30) as shopper:
            shopper.send(json.dumps(["1", "1", "product:1", "phx_join", {}]))
            reply = json.loads(shopper.recv(timeout=30))
            assert reply[3] == "phx_reply" and reply[4]["status"] == "ok"
            assert reply[4]["response"]["released"] is False

            # The second terminal of the README, pointed at the store's cluster (two run here).
            address = store_cluster_address(ray_dir)
            # (Ray presents its token to an address it is given only in token mode: README, "Ray jobs".)
            second = {**env, "SNEAKERS23_CLUSTER": address, "RAY_AUTH_MODE": "token"}
            release = subprocess.run([str(SNEAKERS23), "release", "1"], env=second, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=120)
            assert release.returncode == 0, release.stderr
            assert release.stdout.startswith("product 1 released")
            push = json.loads(shopper.recv(timeout=30))
            assert push[:4] == [None, None, "product:1", "released"]
            assert 'class="size-container__entry' in push[4]["size_html"]
        assert 'data-sizes-for="1"><div class="size-container">' in httpx.get(f"http://127.0.0.1:{port}/").text

        assert processes_under(ray_dir), "Ray's processes run under the store's temporary directory"
        assert haproxy_under(ray_dir), "the chosen request path: HAProxy in front of the replicas"
        store.send_signal(signal.SIGINT)  # Ctrl-C
        assert store.wait(60) == 0
        assert said_so("closing the store")
        wait_for(lambda: not processes_under(ray_dir), timeout=30, what="every Ray process to be gone")
    finally:
        if store.poll() is None:
            store.send_signal(signal.SIGINT)
            try:
                store.wait(60)
            except subprocess.TimeoutExpired:
                store.kill()
        for pid in processes_under(ray_dir):  # a failed run leaves nothing behind either
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(ray_dir, ignore_errors=True)
