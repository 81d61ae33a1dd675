"""The store's own cluster, without Ray: its ports, and how a stop finds and ends every process of
its session (one that ignores SIGTERM, and one that left for a session of its own, included)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from sneakers23.serve import local_cluster
from sneakers23.serve.stopping import StopRequested, StopSignals
from harness.waiting import wait_for


def test_a_port_is_the_usual_one_when_free_and_another_when_not():
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        held = holder.getsockname()[1]
        taken: set[int] = set()
        other = local_cluster._port(held, taken)
        assert other != held and local_cluster.port_is_free("0.0.0.0", other)
    assert local_cluster._port(held, set()) == held  # free again
    assert local_cluster._port(held, {held}) != held  # already given to another of the cluster's ports


# A session like the one `ray start` leaves: its leader has exited; a daemon of it ignores SIGTERM;
# a child of the daemon moved to a session of its own (as a Ray job's driver does).
STUBBORN = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (after the child: it would inherit this)
print(os.getpid(), flush=True)
time.sleep(600)
"""
LEADER = """
import os, subprocess, sys
daemon = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(daemon.stdout.readline().strip(), flush=True)
os._exit(0)
"""
# The store's part: a subreaper that starts the session, then stops it. (In a process of its own:
# the test process is no store.)
STORE = """
import json, subprocess, sys, time
from sneakers23.serve.local_cluster import LocalCluster, _process_table, become_subreaper
become_subreaper()
leader = subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True,
                          start_new_session=True)
daemon = int(leader.stdout.readline())
leader.wait()
cluster = LocalCluster("127.0.0.1:1", "http://127.0.0.1:1", leader.pid)
deadline = time.monotonic() + 10
while len(cluster.processes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
found = cluster.processes()
table = _process_table()
killed = cluster.stop(grace_s=0.5)
print(json.dumps({"daemon": daemon, "found": found, "sessions": sorted({table[pid][1] for pid in found}),
                  "killed": killed, "left": cluster.processes()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sessions and subreapers as Linux has them")
def test_a_stop_ends_every_process_of_the_session_and_every_orphan_that_came_back(tmp_path):
    scripts = {}
    for name, text in (("stubborn", STUBBORN), ("leader", LEADER), ("store", STORE)):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(text)
    result = subprocess.run([sys.executable, str(scripts["store"]), str(scripts["leader"]), str(scripts["stubborn"])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["daemon"] in outcome["found"] and len(outcome["found"]) == 2
    assert len(outcome["sessions"]) == 2, "the runaway was found outside the session, as an orphan that came back"
    assert outcome["killed"] == 1, "the daemon that ignores SIGTERM was killed"
    assert outcome["left"] == []
    for pid in outcome["found"]:
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), what=f"process {pid} gone")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_stop_signal_is_noted_and_start_up_gives_up_at_its_next_look():
    signals = StopSignals()
    signals.check()  # nothing asked yet
    signals._handle(signal.SIGTERM, None)  # a handler that only notes it: it cannot cut anything short
    assert signals.requested.is_set()
    with pytest.raises(StopRequested):
        signals.check()


@pytest.mark.parametrize("args, code, message", [
    (["--replace"], 2, "sneakers23: --replace replaces the store on a cluster given with --address"),
    (["--address", "127.0.0.1:{port}"], 1,
     "sneakers23: cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers there (Connection refused)"),
])
def test_serve_refuses_what_it_cannot_do_in_one_line(tmp_path, args, code, message):
    with socket.socket() as unused:  # a port that nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["SNEAKERS23_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run([sys.executable, "-m", "sneakers23.cli", "serve", *(a.format(port=port) for a in args)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr.strip()) == (code, message.format(port=port))
    assert not (tmp_path / "x.db").exists()
