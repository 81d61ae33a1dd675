"""cluster.yaml passes the checks `ray up` runs, and every key in it is one Ray knows."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray.autoscaler
import yaml
from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import _must_run_everything

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_passes_rays_own_validation():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert set(config) <= set(SCHEMA["properties"])  # the schema allows no others; checked plainly too
    assert set(config["auth"]) <= set(SCHEMA["properties"]["auth"]["properties"])
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs
    assert config["provider"]["type"] == "local" and config["max_workers"] == len(config["provider"]["worker_ips"])


def test_cluster_yaml_keeps_secrets_out_and_token_authentication_on():
    text = (ROOT / "cluster.yaml").read_text()
    assert "sneakers23.env" in text and "RAY_AUTH_MODE=disabled" not in text
    example = (ROOT / "sneakers23.env.example").read_text()
    assert "RAY_AUTH_MODE=token" in example
    assert "sneakers23.env" in (ROOT / ".gitignore").read_text().split()
    assert "serve deploy serve_config.yaml" in text and "ulimit -n" in text


# The head's part of `ray up cluster.yaml`, then `ray stop`, in a PID and network namespace of its
# own: there `ray stop` (which finds Ray's processes by name) sees only this head, and whatever is
# left when the script, the namespace's first process, ends is killed with it.
HEAD = r'''
import json, os, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

def run(command):
    """The command in bash, reaping meanwhile whatever is orphaned to us (we are the namespace's
    init: a zombie that no one reaps looks alive to `ray stop`)."""
    with tempfile.TemporaryFile("w+") as output:
        done = subprocess.Popen(["bash", "-c", command], stdout=output, stderr=subprocess.STDOUT, text=True)
        while done.poll() is None:
            reap(but=done.pid)
            time.sleep(0.02)
        output.seek(0)
        said = output.read()
    if done.returncode != 0:
        sys.exit(f"{command!r} failed: {said[-3000:]}")
    return said

def processes():
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2] != "Z":
                found[int(entry.name)] = stat[stat.index("(") + 1:stat.rindex(")")]
    return found

def ports():
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    return sorted({int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines if line.split()[3] == "0A"})

def reap(but=None):
    while True:
        try:
            waiting = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if waiting is None or waiting.si_pid == but:
            return
        os.waitpid(waiting.si_pid, 0)

def why_not():
    """What Serve says of its applications and proxies, and the errors in its logs."""
    try:
        said = run("set -a && . ~/sneakers23.env && set +a && ~/sneakers23/.venv/bin/serve status")
    except SystemExit as failed:
        said = str(failed)
    logs = Path(os.environ["RAY_TMPDIR"]) / "session_latest" / "logs" / "serve"
    errors = [f"{log.name}: {line}" for log in sorted(logs.glob("*.log"))
              for line in log.read_text(errors="replace").splitlines() if " ERROR " in line or "Traceback" in line]
    return said[-3000:] + "\n" + "\n".join(errors[-30:])

run("ip link set lo up")
for command in json.loads(sys.argv[1]):
    run(command)
deadline = time.monotonic() + 240
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=2).status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the store never answered on port 8000 in 240 s\n" + why_not())
    time.sleep(0.5)
before = {"names": sorted(set(processes().values())), "ports": ports()}
started = time.monotonic()
said = run(sys.argv[2])
while processes() and time.monotonic() - started < 30:
    reap()
    time.sleep(0.05)
print(json.dumps({"before": before, "seconds": time.monotonic() - started, "said": said[-3000:],
                  "left": sorted(set(processes().values())), "ports": ports()}))
'''


@pytest.mark.timeout(600)  # a start that goes wrong is waited on for 240 s, then told
def test_ray_stop_takes_down_a_head_started_as_cluster_yaml_starts_it(tmp_path, figures):
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        if _must_run_everything():
            pytest.fail("unshare (util-linux) and ip (iproute2) are needed: CI installs them")
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    home = tmp_path / "home"
    (home / "sneakers23").mkdir(parents=True)
    (home / "sneakers23" / ".venv").symlink_to(Path(sys.executable).parents[1])
    (home / "sneakers23" / "serve_config.yaml").symlink_to(ROOT / "serve_config.yaml")
    # What an operator fills in (sneakers23.env.example), for a head alone.
    (home / "sneakers23.env").write_text(
        f"SNEAKERS23_DATABASE_URL=sqlite:///{tmp_path / 'shop.db'}\n"
        "SNEAKERS23_SECRET_KEY=a-secret-key-for-this-test-only-and-no-other\n"
        f"RAY_AUTH_MODE=token\nRAY_AUTH_TOKEN={generate_new_authentication_token()}\n")
    head_only = {**copy.deepcopy(config), "max_workers": 0}
    head_only["provider"] = {**head_only["provider"], "worker_ips": []}
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(prepare_config(head_only)))
    (tmp_path / "head.py").write_text(HEAD)
    ray_tmp = tempfile.mkdtemp(prefix="s23yaml-", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "RAY_TMPDIR": ray_tmp, "LANG": "C.UTF-8"}
    stop = config["head_start_ray_commands"][0]  # what the operator runs: `ray stop`
    assert stop.endswith("ray stop")
    try:
        result = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "--net", sys.executable, str(tmp_path / "head.py"),
             json.dumps(config["head_start_ray_commands"]), stop],
            env=env, capture_output=True, text=True, timeout=500)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-6000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert "haproxy" in outcome["before"]["names"] and "raylet" in outcome["before"]["names"]
    assert 8000 in outcome["before"]["ports"]
    assert outcome["left"] == [], outcome
    assert outcome["ports"] == [], outcome
    assert outcome["seconds"] <= 10, outcome["said"]
    figures.append(f"cluster.yaml head: `ray stop` ended every process, HAProxy included, in {outcome['seconds']:.1f}s")
