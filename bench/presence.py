"""Presence's figures, each beside a baseline measured in the same run, on PostgreSQL with fsync on,
on a Ray cluster of NODES nodes on this machine (ray.cluster_utils.Cluster), the replicas serving
HTTP and WebSockets themselves (Serve's direct ingress: no proxy between the sockets and the
replicas, so the figures are the store's own):

1. from a tab joining or leaving to the admin dashboard's socket getting the presence diff that
   names it, with TABS tabs open, spread over every node's channel replica, while RATE tabs a second
   close and as many new ones open: p50/p99, against the same joins' own replies (what the tab
   itself waits for);
2. the CPU that presence adds to the channel replicas, per 1,000 tabs: the replicas' CPU time
   (from /proc) while holding the tabs and during the churn, with presence tracked, against the same
   run with `track_presence` off. The presence actor's and the admin desk's CPU are shown beside.

    .venv/bin/python -m bench.presence [--tabs 5000] [--rate 50] [--seconds 20] [--hold 10] [--nodes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

import httpx

from bench.checkout import summary
from bench.servers import MODES
from harness import postgres
from harness.ports import free_port

ADMIN_PASSWORD = secrets.token_urlsafe(16)
DIRECT_PORTS = range(30000, 30040)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pids(title: str) -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return [int(line.split()[0]) for line in listing[1:] if title in line and "grep" not in line]


def cpu_s(process_ids: list[int]) -> float:
    total = 0
    for pid in process_ids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def direct_ports() -> dict[str, list[int]]:
    """The ports the replicas listen on themselves, by what answers there."""
    import websockets.sync.client

    found: dict[str, list[int]] = {"channels": [], "admin": []}
    for port in DIRECT_PORTS:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/admin/login", timeout=1).status_code == 200:
                found["admin"].append(port)
                continue
        except httpx.HTTPError:
            continue
        try:
            with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0",
                                                open_timeout=2) as ws:
                ws.send(json.dumps(["1", "1", "product:1", "phx_join", {}]))
                if '"ok"' in ws.recv(timeout=2):
                    found["channels"].append(port)
        except Exception:
            pass
    return found


def deploy(settings_args: dict, nodes: int) -> dict[str, list[int]]:
    from ray import serve

    from sneakers23.serve.deploy import APPS

    for name, route_prefix, build in APPS:
        serve.run(build(settings_args), name=name, route_prefix=route_prefix)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ports = direct_ports()
        if len(ports["channels"]) >= nodes and ports["admin"]:
            return ports
        time.sleep(0.5)
    raise SystemExit(f"the replicas' own ports did not answer: {ports}")


def undeploy() -> None:
    from ray import serve

    from sneakers23.serve.deploy import APPS

    for name, _prefix, _build in APPS:
        serve.delete(name)


def run_tabs(spec: dict) -> tuple[dict, dict]:
    """The generator, with the replicas' CPU read at each of its phases."""
    generator = subprocess.Popen([sys.executable, "-m", "bench.presence_tabs"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    generator.stdin.write(json.dumps(spec) + "\n")
    generator.stdin.flush()
    readings: dict = {}
    figures: dict = {}
    for line in generator.stdout:
        record = json.loads(line)
        if "phase" in record:
            readings[record["phase"]] = (time.monotonic(), {
                "channels": cpu_s(pids("ServeReplica:channels:ShopperSockets")),
                "presence_actor": cpu_s(pids("ray::Presence")),
                "admin_desk": cpu_s(pids("ServeReplica:admin:AdminDesk"))})
        else:
            figures = record
    if generator.wait() != 0:
        raise SystemExit("the tabs' generator failed")
    cpu = {}
    for phase, start, stop in (("hold", "hold", "churn"), ("churn", "churn", "end")):
        (t0, before), (t1, after) = readings[start], readings[stop]
        cpu[phase] = {part: round((after[part] - before[part]) / (t1 - t0), 3) for part in before}
    return figures, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50, help="tabs closed (and as many opened) a second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hold", type=float, default=10, help="seconds of holding the tabs, heartbeats only")
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args()

    os.environ.update(MODES["direct"])
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="s23bench-", dir="/tmp")
    from sneakers23.serve.local_cluster import WORKER_PRIORITY
    os.environ.update(WORKER_PRIORITY)  # (the store's workers at the store's priority)
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from sneakers23.cluster import NAMESPACE
    from sneakers23.assembly import start_store_actors
    from sneakers23.inventory import Inventory
    from sneakers23.serve.shoppers import CartTokens, ShopperCookies
    from sneakers23.settings import Settings

    server = postgres.start(postgres.find_bindir(), durable=True)
    cluster = None
    secret = secrets.token_urlsafe(24)
    figures: dict = {"tabs": args.tabs, "nodes": args.nodes, "churn_per_s": args.rate}
    try:
        settings = Settings(database_url=server.url, secret_key=secret, admin_password=ADMIN_PASSWORD, cluster="none")
        inventory = Inventory(settings)
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        inventory.release(1)
        inventory.close()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "dashboard_agent_listen_port": None})
        for index in range(1, args.nodes):
            cluster.add_node(num_cpus=1, resources={f"bench_node_{index}": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        start_store_actors(settings)
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})

        cookies, tokens = ShopperCookies(secret), CartTokens(secret)
        shoppers = [(shopper, tokens.issue(shopper)) for shopper, _ in (cookies.new() for _ in range(args.tabs))]
        extra = [(shopper, tokens.issue(shopper)) for shopper, _ in
                 (cookies.new() for _ in range(int(args.rate * args.seconds) + 10))]
        for tracked in (False, True):
            ports = deploy(settings.model_copy(update={"track_presence": tracked}).model_dump(), args.nodes)
            admin_url = None
            if tracked:
                admin = httpx.Client(base_url=f"http://127.0.0.1:{ports['admin'][0]}")
                import re
                form = re.search(r'name="form_token" value="([^"]+)"', admin.get("/admin/login").text).group(1)
                admin.post("/admin/login", data={"who": "bench", "password": ADMIN_PASSWORD, "form_token": form})
                token = re.search(r'data-socket-token="([^"]+)"', admin.get("/admin/").text).group(1)
                admin_url = f"ws://127.0.0.1:{ports['admin'][0]}/admin/socket/websocket?vsn=2.0.0&token={token}"
            spec = {"channel_urls": [f"ws://127.0.0.1:{p}/product_socket/websocket?vsn=2.0.0" for p in ports["channels"]],
                    "admin_url": admin_url, "tabs": shoppers, "extra": extra, "rate": args.rate,
                    "seconds": args.seconds, "hold_s": args.hold}
            raw, cpu = run_tabs(spec)
            name = "tracked" if tracked else "untracked"
            figures[name] = {"cpu_cores": cpu, "generator_cpu_s": round(raw["cpu_s"], 1),
                             "join_reply": summary(raw["reply_ms"]), "channel_replicas": len(ports["channels"])}
            if tracked:
                figures[name].update({"all_tabs_shown_s": round(raw["all_shown_s"], 1), "missed": raw["missed"],
                                      "join_to_dashboard": summary(raw["join_ms"]),
                                      "leave_to_dashboard": summary(raw["leave_ms"]),
                                      "slowest_leaves_ms_at_s": raw["slowest"][:5],
                                      "churn_started_wall": raw["churn_started_wall"],
                                      "slowest_joins_ms_at_s": raw["slowest_joins"],
                                      "widest_gaps_between_diffs_ms_at_s": raw["widest_gaps"]})
            undeploy()
        thousands = args.tabs / 1000
        for phase in ("hold", "churn"):
            added = figures["tracked"]["cpu_cores"][phase]["channels"] - figures["untracked"]["cpu_cores"][phase]["channels"]
            figures[f"presence_cpu_per_1000_tabs_{phase}"] = f"{100 * added / thousands:.2f}% of a core"
        tracked = figures["tracked"]
        if tracked["join_reply"].get("p99_ms") and tracked["join_to_dashboard"].get("p99_ms"):
            figures["join_to_dashboard_p99_x_join_reply_p99"] = round(
                tracked["join_to_dashboard"]["p99_ms"] / tracked["join_reply"]["p99_ms"], 1)
    finally:
        try:
            ray.shutdown()
        finally:
            if cluster is not None:
                cluster.shutdown()
            server.stop()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
