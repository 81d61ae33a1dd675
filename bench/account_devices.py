"""A cart change between two devices of one account on two nodes, beside the same change between
two tabs of a guest across the same two nodes, in the same run (target: the accounts' p99 within
1.2x the guests').

A Ray cluster of two nodes on this machine (the head and node_a, each with its own Serve proxy port:
harness/nodes.py, as the tests' session cluster), the store's replication and web applications on
it, on PostgreSQL with fsync on. SHOPPERS guests hold two tabs each, one through each node's proxy;
SHOPPERS verified accounts hold two devices each the same way, each device signed in (a session of
its own) and its socket carrying that session's cookie (the account's cart channel is joined only
so). Each first tab adds a size, then
removes it, paced at RATE changes a second; the figure is the time until the tab on the other node
gets the `cart` push of that version (bench/cart_tabs.py). Guests and accounts alternate, each
first in turn, ROUNDS times.

    .venv/bin/python -m bench.account_devices [--shoppers 500] [--rate 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import statistics
import tempfile
from datetime import datetime, timezone

from sqlalchemy import insert

from bench.accounts import accounts_with_sessions
from bench.checkout import tabs
from harness import postgres
from harness.nodes import add_node, deploy_store, remove_store, web_replicas_running
from harness.ports import free_port
from harness.waiting import wait_for
from sneakers23.db.models import AccountSessionRow
from sneakers23.domain.accounts import account_shopper_id
from sneakers23.inventory import Inventory
from sneakers23.serve.local_cluster import WORKER_PRIORITY
from sneakers23.serve.shoppers import CartTokens, SessionCookies, ShopperCookies, session_mark
from sneakers23.settings import Settings


def more_sessions(inventory: Inventory, account_ids: list[int]) -> list[str]:
    """A second session for each account (its second device, signed in there), as rows."""
    now = datetime.now(timezone.utc)
    tokens = [secrets.token_urlsafe(32) for _ in account_ids]
    with inventory.engine.begin() as connection:
        connection.execute(insert(AccountSessionRow.__table__), [
            {"token_hash": hashlib.sha256(token.encode()).hexdigest(), "account_id": account_id, "created_at": now,
             "client": "bench", "user_agent": "second device"} for account_id, token in zip(account_ids, tokens)])
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from sneakers23.assembly import start_store_actors
    from sneakers23.cluster import NAMESPACE

    server = postgres.start(postgres.find_bindir(), durable=True)
    cluster = None
    figures: dict = {"shoppers": args.shoppers, "rate": args.rate, "rounds": args.rounds}
    try:
        secret = secrets.token_urlsafe(32)
        settings = Settings(database_url=server.url, cluster="none", secret_key=secret)
        inventory = Inventory(settings)
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        inventory.release(1)
        cookies, carts, sessions = ShopperCookies(secret), CartTokens(secret), SessionCookies(secret)
        guests = []
        for shopper_id, cookie in (cookies.new() for _ in range(args.shoppers)):
            guests.append((shopper_id, carts.issue(shopper_id), f"sneakers23_shopper={cookie}"))
        members = []
        signed_in = accounts_with_sessions(inventory, args.shoppers)
        second_devices = more_sessions(inventory, [account_id for account_id, _token in signed_in])
        for (account_id, token), other in zip(signed_in, second_devices):
            shopper_id = account_shopper_id(account_id)
            members.append((shopper_id, *(item for session in (token, other) for item in (
                carts.issue(shopper_id, session_mark(session)), f"sneakers23_session={sessions.cookie(session)}"))))
        inventory.close()

        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="s23devices-", dir="/tmp")
        os.environ.update(WORKER_PRIORITY)  # (the store's workers at the store's priority)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"head": 1}})
        proxy_ports: dict[str, int] = {}
        add_node(cluster, "node_a", proxy_ports)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        start_store_actors(settings, watch_seconds=0.5)
        head = deploy_store(settings.model_dump(), free_port())
        wait_for(lambda: web_replicas_running(2), timeout=180, interval=0.5, what="web replicas on each node")
        urls = [f"ws{base[4:]}/product_socket/websocket?vsn=2.0.0"
                for base in (head, f"http://127.0.0.1:{proxy_ports['node_a']}")]
        runs: dict[str, list[dict]] = {"guests": [], "accounts": []}
        for round_ in range(args.rounds):
            for kind in (("guests", "accounts") if round_ % 2 == 0 else ("accounts", "guests")):
                runs[kind].append(tabs(urls[0], guests if kind == "guests" else members, args.rate, urls=urls))
        for kind, found in runs.items():
            figures[kind] = found
        if any("p99_ms" not in run["tab_to_tab"] for found in runs.values() for run in found):
            raise SystemExit(f"too few changes seen to measure: {json.dumps(runs)[:2000]}")
        p99 = {kind: statistics.median(run["tab_to_tab"]["p99_ms"] for run in found) for kind, found in runs.items()}
        figures["accounts_p99_x_guests"] = round(p99["accounts"] / p99["guests"], 2)
        remove_store()
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()
        server.stop()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
