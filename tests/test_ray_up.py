"""`ray up cluster.yaml` for real, on separate hosts (tests/support/hosts.py: network, PID and mount
namespaces each, sshd, PostgreSQL on a host of its own), then the drills an operator runs before a
real deployment: a release crosses hosts, a stampede runs as a Ray job, a worker host dies and comes
back with `ray up`, and `ray down` leaves nothing behind.

Only cluster.yaml's fill-ins change (addresses, user, key); the database URL and secrets are in
sneakers23.env, as docs/operations.md says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import _must_run_everything
from tests.support.hosts import Host, Hosts
from tests.support.store_fixtures import ADMIN_PASSWORD, PhoenixClient
from harness.waiting import NotYet, wait_for

ROOT = Path(__file__).resolve().parents[1]
# (Serially the drill takes about 4 minutes; beside the other test worker's cluster and stores, 7 to 10 in CI;
# a stall of Ray's autoscaler, and the restart that gets past it, up to 20 more.)
pytestmark = [pytest.mark.hosts, pytest.mark.timeout(2700)]
SETTINGS = "set -a && . ~/sneakers23.env && set +a &&"  # a node's settings, as cluster.yaml reads them
ON_A_NODE = f"{SETTINGS} ~/sneakers23/.venv/bin/sneakers23"


@pytest.fixture
def hosts():
    missing = [tool for tool in ("ip", "unshare", "nsenter", "ssh", "ssh-keygen", "rsync", "sudo", "curl")
               if shutil.which(tool) is None]
    missing += [] if Path("/usr/sbin/sshd").exists() else ["sshd (openssh-server)"]
    missing += [] if os.geteuid() == 0 else ["root"]
    if missing:
        if _must_run_everything():
            pytest.fail(f"the ray up drill needs {', '.join(missing)}: CI installs them")
        pytest.skip(f"needs {', '.join(missing)}")
    with Hosts() as made:
        yield made


def http(hosts: Hosts, url: str) -> tuple[int, str]:
    """A request from the operator's host: (status, body); status 0 when nothing answered."""
    result = hosts.run("curl", "-s", "-m", "3", "-o", "/dev/stdout", "-w", "\n%{http_code}", url, check=False)
    body, _, status = result.stdout.rpartition("\n")
    return (int(status) if status.isdigit() else 0), body


def serves_the_catalog(hosts: Hosts, host: Host) -> bool:
    status, body = http(hosts, f"http://{host.address}:8000/api/products")
    return status == 200 and "Hop Man 3" in body


def caches(hosts: Hosts, checkout: Path, ray_env: dict) -> dict[str, tuple[str, str]]:
    """`sneakers23 status` on the head, as docs/operations.md has the operator check it: each node's
    address with its cache's state and lag."""
    said = hosts.run("ray", "exec", "cluster.yaml", f"{ON_A_NODE} status", cwd=checkout, check=False,
                     **ray_env).stdout
    rows = [line.split() for line in said.splitlines() if re.match(r"^[0-9a-f]{12}\s", line)]
    return {row[1]: (row[3], row[5]) for row in rows}


def all_caches_ready(hosts: Hosts, checkout: Path, ray_env: dict) -> bool | NotYet:
    seen = caches(hosts, checkout, ray_env)
    return all(seen.get(h.address) == ("ready", "0") for h in hosts.ray_hosts()) or NotYet(seen)


def node_addresses(hosts: Hosts, ray_env: dict) -> dict[str, str]:
    """Each live Ray node's id, with its host's address."""
    head = hosts.ray_hosts()[0]
    nodes = hosts.run("ray", "list", "nodes", "--address", f"http://{head.address}:8265", "--filter",
                      "state=ALIVE", "--format", "json", check=False, **ray_env).stdout
    try:
        return {n["node_id"]: n["node_ip"] for n in json.loads(nodes)}
    except json.JSONDecodeError:
        return {}


def sockets_by_address(hosts: Hosts, ray_env: dict) -> dict[str, int]:
    """The sockets each host's channel replica holds (any host's HAProxy may hand a socket to any
    host's replica), asked of every channel replica from the head."""
    ask = ('import json, ray; from ray import serve; ray.init(address="auto", logging_level="ERROR"); '
           'replies = serve.get_app_handle("channels").broadcast("sockets").results(timeout_s=10, '
           'return_exceptions=True); print(json.dumps([r for r in replies if isinstance(r, dict)]))')
    said = hosts.ssh(hosts.ray_hosts()[0], f"{SETTINGS} ~/sneakers23/.venv/bin/python -c "
                                           f"{shlex.quote(ask)}").stdout
    address_of = node_addresses(hosts, ray_env)
    replies = json.loads(said.strip().splitlines()[-1])
    return {address_of.get(r["node_id"], r["node_id"]): r["sockets"] for r in replies}


def web_replicas_by_address(hosts: Hosts, checkout: Path, ray_env: dict) -> dict[str, int]:
    """The store's live web replicas (pages and channels) on each host."""
    head = hosts.ray_hosts()[0]
    listed = hosts.run("ray", "list", "actors", "--address", f"http://{head.address}:8265", "--filter",
                       "state=ALIVE", "--detail", "--format", "json", "--limit", "10000", check=False,
                       **ray_env).stdout
    address_of = node_addresses(hosts, ray_env)
    try:
        actors = json.loads(listed)
    except json.JSONDecodeError:
        return {}
    counts: dict[str, int] = {}
    for actor in actors:
        if actor["class_name"].endswith(("Storefront", "ShopperSockets")) and actor["node_id"] in address_of:
            address = address_of[actor["node_id"]]
            counts[address] = counts.get(address, 0) + 1
    return counts


def _program(command: str) -> str:
    """A process's program, short: `raylet`, `ray::ServeController`, `python …/dashboard/agent.py`."""
    words = command.split()
    if not words:
        return "?"
    name = words[0].rsplit("/", 1)[-1]
    if name.startswith("python") and len(words) > 1:
        name += " " + "/".join(words[1].split("/")[-2:])
    return name


def explained(wait, hosts: Hosts, head: Host):
    """The wait; when it times out, what the head's autoscaler last said and what runs on each host,
    so that a slow node is understood from the CI log alone."""
    try:
        return wait()
    except AssertionError as error:
        said = hosts.ssh(head, "tail -n 40 /tmp/ray/session_latest/logs/monitor.log 2>&1; echo '[its updaters and errors]'; "
                               "grep -aE 'pdater|NodeLauncher|Traceback|Error|rror:' "
                               "/tmp/ray/session_latest/logs/monitor.log | tail -n 40; "
                               "tail -n 20 /tmp/ray/session_latest/logs/monitor.err 2>&1; "
                               "echo '[its updaters said]'; grep -aiE 'NodeUpdater|failed|rror' "
                               "/tmp/ray/session_latest/logs/monitor.out | tail -n 30; true").stdout
        # A worker's update fails when its `sneakers23 node join` does (Ray never tries that node again).
        joins = {host.name: hosts.ssh(host, "tail -n 15 ~/.sneakers23/ray-node.log 2>&1; true").stdout[-1500:]
                 for host in hosts.ray_hosts() if host is not head}
        running = {host.name: sorted({_program(cmd) for cmd in host.processes().values()}) for host in hosts.ray_hosts()}
        raise AssertionError(f"{error}\nthe head's autoscaler said:\n{said[-7000:]}\nthe workers' joins said: {joins}"
                             f"\nrunning: {running}") from None


def serving_after_a_stall(hosts: Hosts, checkout: Path, ray_env: dict, head: Host, host: Host,
                          stalled: list[str]) -> None:
    """Until the host serves the catalog. Ray's autoscaler sometimes never starts a worker's setup:
    no failure, the node left "uninitialized" for good (CI20, CI21, CI25, and the reboot leg before).
    An operator runs `ray up` again (docs/operations.md), restarting the head's Ray and with it the
    autoscaler (CI25: `ray up --no-restart`, which leaves the running autoscaler as it is, left both
    workers uninitialized 600 s more); so does the drill, once per host, and the figures say so."""
    try:
        wait_for(lambda: serves_the_catalog(hosts, host), timeout=300, interval=1, what="")
    except AssertionError:
        if not never_initialized(hosts, head, host):
            raise
        stalled.append(host.name)
        hosts.run("ray", "up", "-y", "--no-config-cache", "cluster.yaml", cwd=checkout, timeout=600, **ray_env)
    explained(lambda: wait_for(lambda: serves_the_catalog(hosts, host), timeout=600, interval=1,
                               what=f"the catalog at {host.address}:8000"), hosts, head)


def never_initialized(hosts: Hosts, head: Host, host: Host) -> bool:
    """The head's autoscaler still shows the host as it was before its setup began."""
    said = hosts.ssh(head, "tail -n 40 /tmp/ray/session_latest/logs/monitor.log 2>&1; true").stdout
    return f"{host.address}: local.cluster.node, uninitialized" in said


def beyond_the_host_itself(host: Host) -> dict[int, str]:
    """The host's processes but its init and its sshd (and sshd's sessions): what Ray and the store left."""
    return {pid: cmd for pid, cmd in host.processes().items()
            if pid != host.init_pid and not cmd.startswith(("sshd:", "/usr/sbin/sshd"))}


def workers_niceness(host: Host) -> set[int]:
    """The niceness of the host's Ray workers (its `ray::` processes: replicas, caches, actors)."""
    found = set()
    for pid, command in host.processes().items():
        if command.startswith("ray::"):
            try:
                found.add(os.getpriority(os.PRIO_PROCESS, pid))
            except ProcessLookupError:  # (gone since it was listed)
                continue
    return found


class StopWatch:
    """The head watched every 0.1 s, from a thread, while `ray down` runs cluster.yaml's `ray stop` on it:
    when the stop's ssh session appeared, when the first of the head's processes went (in its first
    round of SIGTERM: the session's start and its Python's imports are before it), and when nothing was left
    (init, sshd and that session aside). (Folded in from tests/test_cluster_yaml.py, which started a
    head of its own for it: a minute of CI.)"""

    def __init__(self, head: Host):
        self.head = head
        self.session_at: float | None = None
        self.first_gone_at: float | None = None
        self.ended: float | None = None
        self.there: set[int] = set()  # the head's processes when the session appeared
        self.left: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.1) and self.ended is None:
            running = beyond_the_host_itself(self.head)
            theirs = {pid: cmd for pid, cmd in running.items() if "ray stop" not in cmd}
            now = time.monotonic()
            if self.session_at is None:
                if len(theirs) < len(running):  # (the session's shell, then its `ray stop`)
                    self.session_at, self.there = now, set(theirs)
                continue
            if self.first_gone_at is None and self.there - set(theirs):
                self.first_gone_at = now
            self.left = sorted({_program(cmd) for cmd in theirs.values()})
            if not theirs:
                self.ended = now

    def took(self) -> tuple[float, float] | NotYet:
        """(seconds from the first process gone until nothing was left, seconds from its session's start)."""
        if self.first_gone_at is None or self.ended is None:
            return NotYet({"session": self.session_at is not None, "a process gone": self.first_gone_at is not None,
                           "left": self.left})
        return self.ended - self.first_gone_at, self.ended - self.session_at

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)


def only_what_an_operator_fills_in(original: str, filled: str) -> None:
    before, after = yaml.safe_load(original), yaml.safe_load(filled)
    for key in ("head_ip", "worker_ips"):
        before["provider"].pop(key), after["provider"].pop(key)
    before["auth"], after["auth"] = {}, {}
    before.pop("max_workers"), after.pop("max_workers")
    assert before == after


def test_ray_up_on_separate_hosts_then_the_drills(hosts, phoenix_js, figures):
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

    head, worker1, worker2 = hosts.ray_hosts()
    checkout = hosts.operators_checkout()
    original = (ROOT / "cluster.yaml").read_text()
    filled = hosts.filled_cluster_yaml(original)
    only_what_an_operator_fills_in(original, filled)
    (checkout / "cluster.yaml").write_text(filled)
    token = generate_new_authentication_token()
    (checkout / "sneakers23.env").write_text(hosts.sneakers23_env(token, ADMIN_PASSWORD))
    ray_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    # ray up: the head, then its autoscaler sets up both workers over ssh.
    started = time.monotonic()
    hosts.run("ray", "up", "-y", "--no-config-cache", "cluster.yaml", cwd=checkout, timeout=600, **ray_env)
    head_up = time.monotonic() - started
    stalled: list[str] = []
    for host in hosts.ray_hosts():
        serving_after_a_stall(hosts, checkout, ray_env, head, host, stalled)
    if stalled:  # (`ray up` again restarted the head's Ray: the hosts found serving before it, again)
        for host in hosts.ray_hosts():
            explained(lambda: wait_for(lambda: serves_the_catalog(hosts, host), timeout=600, interval=1,
                                       what=f"the catalog at {host.address}:8000 after the restart"), hosts, head)
    # (After a restart of the head's Ray the workers' raylets lose it, and the autoscaler starts
    # them again: minutes more.)
    wait_for(lambda: all_caches_ready(hosts, checkout, ray_env), timeout=300 if stalled else 120, interval=1,
             what="a ready cache, caught up, on every host")
    wait_for(lambda: set(web_replicas_by_address(hosts, checkout, ray_env)) == {h.address for h in hosts.ray_hosts()},
             timeout=300 if stalled else 120, interval=1, what="web replicas on every host")
    all_up = time.monotonic() - started
    # cluster.yaml starts every node's workers at the niceness of its other processes, not Ray's 15.
    niceness = {host.address: workers_niceness(host) for host in hosts.ray_hosts()}
    assert all(found == {0} for found in niceness.values()), niceness

    # A release made on one host reaches a shopper's socket held on another: the socket comes in at
    # worker 1's address, and the release is made on a host whose replica does not hold it.
    # (A host powered off sends no FIN: the client's heartbeat notices within two periods.)
    shopper = PhoenixClient(phoenix_js, f"ws://{worker1.address}:8000/product_socket", ["product:1"],
                            within=hosts.enter(), heartbeat_ms=1000)
    try:
        join = wait_for(lambda: shopper.of("join_ok", topic="product:1"), timeout=30, what="the shopper's join")
        assert not join[0]["response"]["released"]
        held = wait_for(lambda: [a for a, n in sockets_by_address(hosts, ray_env).items() if n == 1], timeout=30,
                        interval=1, what="the replica that holds the shopper's socket")
        assert len(held) == 1, held
        releaser = next(h for h in (worker2, head, worker1) if h.address != held[0])
        released_at = time.monotonic()
        hosts.ssh(releaser, f"{ON_A_NODE} release 1")
        wait_for(lambda: shopper.of("released", topic="product:1"), timeout=30, what="the release on worker 1")
        release_s = time.monotonic() - released_at

        # A stampede as a Ray job sells exactly the stock of a size: 100 buyers more than its pairs (the
        # size's stock is seeded in the hundreds: three times as many buyers was a minute of CPU more).
        catalog = json.loads(hosts.ssh(head, f"{ON_A_NODE} products --json").stdout)
        item = min((i for i in catalog[0]["items"] if i["available_count"] > 0), key=lambda i: i["available_count"])
        stock = item["available_count"]
        job = hosts.run("ray", "job", "submit", "--address", f"http://{head.address}:8265", "--working-dir", ".",
                        "--", "python", "-m", "sneakers23.jobs.drop", "stampede", "--buyers", str(stock + 100),
                        "--concurrency", "32", "--items", str(item["id"]),
                        cwd=checkout, timeout=300, **ray_env).stdout
        assert re.search(rf"pairs sold\s+{stock}\b", job), job[-3000:]
        assert "[ok] no shopper over the limits" in job and "succeeded" in job, job[-3000:]
        after = json.loads(hosts.ssh(head, f"{ON_A_NODE} products --json").stdout)
        assert next(i for i in after[0]["items"] if i["id"] == item["id"])["available_count"] == 0
        wait_for(lambda: any(r["payload"]["item_id"] == item["id"] and r["payload"]["level"] == "out"
                             for r in shopper.of("stock_change", topic="product:1")),
                 timeout=20, what="the size's sell-out on the shopper's socket")

        # Worker 2 dies, every process of it at once; the others keep serving, socket included.
        worker2.power_off()
        killed_at = time.monotonic()
        assert worker2.processes() == {}
        answered = [serves_the_catalog(hosts, host) for _ in range(5) for host in (head, worker1)]
        # Most requests are served at once (HAProxy may still pick a dead replica for a moment)...
        assert answered.count(True) >= len(answered) // 2, answered
        # ...and all of them soon.
        wait_for(lambda: all(serves_the_catalog(hosts, host) for host in (head, worker1)), timeout=60,
                 interval=0.5, what="head and worker 1 serving after worker 2's death")
        # The shopper's socket came in at worker 1, but worker 1's HAProxy may have handed it to a
        # replica on worker 2: then it closed, and the page joined again, as a browser's does.
        closed = bool(shopper.of("close"))
        if closed:
            wait_for(lambda: len(shopper.of("join_ok", topic="product:1")) >= 2, timeout=30,
                     what="the shopper's socket joining again")
        hosts.ssh(head, f"{ON_A_NODE} restock {item['id']} 7")
        wait_for(lambda: any(r["payload"]["item_id"] == item["id"] and r["payload"]["level"] != "out"
                             for r in shopper.of("stock_change", topic="product:1")),
                 timeout=20, what="a restock on the shopper's socket after worker 2's death")
        steady_s = time.monotonic() - killed_at
    finally:
        shopper.close()

    # The host boots again and `ray up` brings it back: its own cache and web replicas.
    worker2.boot()
    wait_for(lambda: 22 in worker2.listening_ports(), timeout=30, what="worker 2's sshd")
    back_at = time.monotonic()
    hosts.run("ray", "up", "-y", "--no-config-cache", "--no-restart", "cluster.yaml", cwd=checkout, timeout=600,
              **ray_env)
    serving_after_a_stall(hosts, checkout, ray_env, head, worker2, stalled)
    wait_for(lambda: all_caches_ready(hosts, checkout, ray_env), timeout=300 if stalled else 120, interval=1,
             what="worker 2's cache, ready and caught up")
    wait_for(lambda: worker2.address in web_replicas_by_address(hosts, checkout, ray_env),
             timeout=300 if stalled else 120, interval=1, what="web replicas on worker 2")
    back_s = time.monotonic() - back_at
    # Its cache holds what the database holds (caught up, above: the restock made while it was away
    # included), and its address answers the same catalog as the head's. (Any host's HAProxy may
    # hand a request to any host's replica: this is the store as a shopper at that address sees it.)
    catalog_on: dict[str, tuple[int, str]] = {}

    def same_catalog() -> bool:
        for host in (worker2, head):
            catalog_on[host.name] = http(hosts, f"http://{host.address}:8000/api/products")
        return catalog_on[worker2.name] == catalog_on[head.name] and catalog_on[head.name][0] == 200

    try:
        wait_for(same_catalog, timeout=60, interval=1, what="the same catalog at worker 2 as at the head")
    except AssertionError:
        assert catalog_on[worker2.name] == catalog_on[head.name], catalog_on  # (what differed)
        raise

    # ray down: nothing of Ray's left on any host, no port but the host's own sshd. `ray down` runs
    # cluster.yaml's `ray stop` on the head alone: the head is watched while it runs, so that the
    # stop's own time is told apart from the command's (its start, its ssh, its wait for the nodes).
    running = {_program(cmd) for cmd in head.processes().values()}
    assert {"haproxy", "raylet"} <= running, running
    assert {8000, 8265, 6379} <= set(head.listening_ports()), head.listening_ports()
    stop = StopWatch(head)
    down_at = time.monotonic()
    try:
        down = hosts.run("ray", "down", "-y", "cluster.yaml", cwd=checkout, timeout=300, **ray_env).stdout
        down_command_s = time.monotonic() - down_at
        stop_s, stop_with_start_s = wait_for(stop.took, timeout=30, interval=0.2,
                                             what="the head's `ray stop` to end every process")
    finally:
        stop.close()
    # `ray stop` sends SIGTERM and gives each of its three rounds (the raylet, the rest, the GCS) a
    # third of its 16 s grace period before SIGKILL. From its session's start (its Python's imports
    # included) it took 8.4 s alone (6.5 s from the first process gone), 11.5 and 12.9 s in two CI runs
    # (CI94, CI96): timed from the first process gone (in its first round), so that a busy machine's
    # slow start is not counted, and held to that period.
    assert stop_s <= 16, f"the head's `ray stop` took {stop_s:.1f} s from the first process gone to nothing left"
    # What `ray stop` said of it, passed on by `ray down`: on a quiet machine, "Stopped only 6 out of 7
    # Ray processes within the grace period" (the GCS server, its last round, was killed when the round
    # ran out; Ray's own line, kept in the figures below).
    said_by_stop = next((re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in down.splitlines()
                         if "Stopped all" in line or "Stopped only" in line), "nothing")

    def leftovers() -> dict[str, list[str]]:
        left = {}
        for host in hosts.ray_hosts():
            theirs = list(beyond_the_host_itself(host).values())
            ports = [port for port in host.listening_ports() if port != 22]
            if theirs or ports:
                left[host.name] = theirs + [f"port {port}" for port in ports]
        return left

    clean_after: dict[str, float] = {}  # each host: seconds from `ray down` until nothing was left
    last_seen: dict[str, list[str]] = {}  # each host: what was left the last time something was

    def all_clean() -> bool:
        left = leftovers()
        for host in hosts.ray_hosts():
            if host.name in left:
                last_seen[host.name] = sorted({_program(cmd) for cmd in left[host.name]})
            else:
                clean_after.setdefault(host.name, time.monotonic() - down_at)
        return not left

    try:
        # The workers' Ray agents take about a minute to notice their raylet is gone (75 s in all).
        wait_for(all_clean, timeout=150, interval=0.5, what="every host clean after ray down")
    except AssertionError:
        assert {host: sorted({_program(cmd) for cmd in left}) for host, left in leftovers().items()} == {}
    down_s = time.monotonic() - down_at
    holder = next(h.name for h in hosts.ray_hosts() if h.address == held[0])
    figures.append(
        f"ray up on 3 hosts: head up in {head_up:.0f} s, all serving with caches and replicas in {all_up:.0f} s; "
        f"a release made on {releaser.name} reached a socket held on {holder} in {release_s:.2f} s; "
        f"a stampede job sold exactly {stock}; worker 2 killed: "
        f"{answered.count(False)} of {len(answered)} requests to the others failed at once, the shopper's socket "
        f"{'closed and joined again' if closed else 'stayed open'}, all served again and pushes flowing after "
        f"{steady_s:.1f} s; booted again, it was back with its cache and replicas in {back_s:.0f} s; "
        f"ray down left nothing in {down_s:.1f} s (the command itself {down_command_s:.1f} s, the head's `ray stop` in it "
        f"{stop_s:.1f} s from the first process gone, {stop_with_start_s:.1f} s with its start, HAProxy included "
        f"(it said: {said_by_stop}); clean after "
        + ", ".join(f"{name} {seconds:.1f} s (last seen {', '.join(last_seen.get(name, [])) or 'nothing'})"
                    for name, seconds in clean_after.items()) + ")"
        + (f"; Ray's autoscaler left {', '.join(dict.fromkeys(stalled))} uninitialized: `ray up` again, restarting the head's Ray, "
           "brought it back" if stalled else ""))
