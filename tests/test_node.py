"""What a cluster node runs beside Ray (sneakers23/node.py), with real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

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
        wait_for(lambda: _answers(port), timeout=10, what="HAProxy answering")
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
