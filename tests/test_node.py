"""What a cluster node runs beside Ray (sneakers23/node.py), with real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from harness.ports import free_port
from harness.processes import alive
from harness.waiting import wait_for

WRAPPER = Path(sys.executable).with_name("sneakers23-haproxy")

# The Serve process that starts HAProxy, standing in: it starts it, says its pid, and waits.
PARENT = """
import subprocess, sys, time
haproxy = subprocess.Popen([sys.argv[1], "-db", "-f", sys.argv[2]])
print(haproxy.pid, flush=True)
time.sleep(600)
"""


def test_haproxy_ends_when_the_process_that_started_it_is_killed(tmp_path):
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n"
        f"  timeout server 5s\nfrontend shop\n  bind 127.0.0.1:{port}\n  http-request return status 200\n")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(WRAPPER), str(config)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        haproxy = int(parent.stdout.readline())
        wait_for(lambda: _answers(port), timeout=30, what="HAProxy answering")
        assert Path(f"/proc/{haproxy}/comm").read_text().strip() == "haproxy"  # the wrapper became HAProxy
        os.kill(parent.pid, signal.SIGKILL)  # as a node's Ray dies: no chance to clean up
        parent.wait()
        wait_for(lambda: not alive(haproxy), timeout=10, what="HAProxy ending with its parent")
        assert not _answers(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if _group_alive(parent.pid):  # a HAProxy left by a failed run: its group is the parent's
            os.killpg(parent.pid, signal.SIGKILL)


def _answers(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_a_held_command_that_ends_takes_what_it_left_in_its_session_with_it(tmp_path):
    """`node join`'s holder: Ray's agents outlive their raylet, as `sleep` outlives the shell here."""
    left = tmp_path / "left.pid"
    holder = subprocess.Popen([sys.executable, "-m", "sneakers23.node", "hold", "sh", "-c",
                               f"trap '' TERM; sleep 600 & echo $! > {left}; exec sleep 1"],
                              start_new_session=True)
    try:
        orphan = int(wait_for(lambda: left.exists() and left.read_text().strip(), timeout=10, what="the orphan"))
        assert holder.wait(timeout=30) == 0
        assert not alive(orphan), "the process the command left behind ended with the holder"
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)


def test_a_signal_to_the_holder_goes_to_the_held_command(tmp_path):
    holder = subprocess.Popen([sys.executable, "-m", "sneakers23.node", "hold", sys.executable, "-c",
                               "import signal, sys, time\n"
                               "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
                               "print('ready', flush=True)\ntime.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=30) == 7, "the command's own exit code"
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)


FLAKY_RAY = """#!{python}
import pathlib, sys, time
tries = pathlib.Path(sys.argv[0]).with_name("tries")
if sys.argv[1] == "stop":
    sys.exit(0)
count = int(tries.read_text()) if tries.exists() else 0
tries.write_text(str(count + 1))
if count == 0:  # the first start fails, as a raylet that timed out registering with a busy head
    print("The current node timed out during startup.", flush=True)
    sys.exit(1)
print("Ray runtime started.", flush=True)
time.sleep(600)
"""


def test_node_join_tries_a_failed_start_once_more_and_node_stop_ends_it(tmp_path, monkeypatch):
    """Ray's autoscaler runs a worker's `node join` once: a start that failed on a busy head would
    leave the node out for good, so join tries again before it gives up."""
    from sneakers23 import node

    monkeypatch.setenv("HOME", str(tmp_path))
    ray = tmp_path / "ray"
    ray.write_text(FLAKY_RAY.replace("{python}", sys.executable))
    ray.chmod(0o755)
    said = node.join("10.0.0.1:6379", timeout_s=30, ray=str(ray))
    assert "Ray runtime started." in said and (tmp_path / "tries").read_text() == "2"
    assert "timed out" not in said  # (what this try said, not the log's earlier lines)
    log = (tmp_path / ".sneakers23" / "ray-node.log").read_text()
    assert log.count("--- ray start --address=10.0.0.1:6379") == 2 and "timed out during startup" in log
    holder = int((tmp_path / ".sneakers23" / "ray-node.pid").read_text())
    assert alive(holder)
    assert node.stop()
    wait_for(lambda: not alive(holder), timeout=30, what="the holder to end")
