"""Channel fan-out: from a sale to its `stock_change` reaching every connected socket, for 1,000 and
10,000 sockets on one node, versus a bare `websockets` broadcast to the same number, in one run.

The store's figure is the whole path a shopper sees: the purchase request, the database commit,
replication to the node cache, the web replica's live catalog, and the push. The baseline only
broadcasts. The sockets are held by two load-generator processes (bench/fanout_clients.py), which
report the CPU they spent, to show whether they kept up.

    .venv/bin/python -m bench.channel_fanout [--sockets 1000,10000] [--rounds 5] [--modes haproxy+throughput]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import update

from bench.servers import MODES, Process, socket_url, start_store
from harness.ports import free_port
from sneakers23.db.models import ItemAvailabilityRow
from sneakers23.inventory import Inventory
from sneakers23.jobs.report import percentile
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in
from sneakers23.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PROCESSES = 2
START_COUNT = 500  # one sale takes a size from high to medium: a push every time


class LoadGenerator:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "bench.fanout_clients"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict:
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


def open_sockets(url: str, count: int, join: str | None) -> tuple[list[LoadGenerator], int]:
    """The load generators holding the sockets, and how many sockets opened."""
    generators = [LoadGenerator() for _ in range(CLIENT_PROCESSES)]
    for generator in generators:
        generator.send({"open": url, "count": count // CLIENT_PROCESSES, "join": join})
    return generators, sum(generator.answer()["opened"] for generator in generators)


def collect(generators, payload: dict, per_generator: int, started: float):
    for generator in generators:
        generator.send({"collect": payload, "expect": per_generator, "timeout": 60})
    answers = [generator.answer() for generator in generators]  # each waits up to its timeout
    arrivals = [t for answer in answers for t in answer["arrivals"]]
    latencies = [(t - started) * 1000 for t in arrivals]
    busy = max(answer["cpu_s"] / max(1e-9, max(answer["arrivals"], default=started) - started)
               for answer in answers)
    return latencies, busy


def store_rounds(mode, database_url, sizes, rounds, items):
    results = {}
    port = free_port()
    store = start_store(mode, database_url, port)
    item_iter = iter(items)
    try:
        for count in sizes:
            generators, opened = open_sockets(socket_url(mode, port), count, "product:1")
            latencies, busiest, missed = [], 0.0, 0
            if opened < count:  # this path cannot hold them all: say so, measure nothing
                print(f"store, {mode}: only {opened} of {count} sockets opened", file=sys.stderr)
                for generator in generators:
                    generator.stop()
                results[count] = ([], 0.0, count - opened)
                continue
            for _ in range(rounds):
                item_id = next(item_iter)
                shopper = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
                token = form_token_in(shopper.get("/").text)
                started = time.time()
                response = shopper.post(f"/api/items/{item_id}/purchase", headers={FORM_TOKEN_HEADER: token})
                assert response.status_code == 200, response.text
                payload = {"product_id": 1, "item_id": item_id, "level": "medium"}
                got, busy = collect(generators, payload, count // CLIENT_PROCESSES, started)
                missed += count - len(got)  # reported, not hidden: a path that drops sockets loses
                latencies += got
                busiest = max(busiest, busy)
            for generator in generators:
                generator.stop()
            results[count] = (latencies, busiest, missed)
    finally:
        store.stop()
    return results


def baseline_rounds(sizes, rounds):
    import websockets.sync.client

    results = {}
    port = free_port()
    server = Process([sys.executable, str(ROOT / "bench" / "bare_broadcast.py"), str(port)], None, "bare-broadcast")
    try:
        while "ready" not in Path(server.log_path).read_text():  # it says so once listening
            time.sleep(0.05)
        for count in sizes:
            generators, opened = open_sockets(f"ws://127.0.0.1:{port}/", count, None)
            assert opened == count, f"the baseline opened only {opened} of {count} sockets"
            latencies, busiest = [], 0.0
            with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/trigger") as trigger:
                for n in range(rounds):
                    payload = {"product_id": 1, "item_id": 1000 + n, "level": "medium"}
                    started = time.time()
                    trigger.send(json.dumps([None, None, "product:1", "stock_change", payload]))
                    got, busy = collect(generators, payload, count // CLIENT_PROCESSES, started)
                    assert len(got) == count
                    latencies += got
                    busiest = max(busiest, busy)
            for generator in generators:
                generator.stop()
            results[count] = (latencies, busiest, 0)
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="haproxy+throughput")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sockets.split(",")]
    modes = args.modes.split(",")
    assert all(mode in MODES for mode in modes)

    workdir = Path(tempfile.mkdtemp(prefix="s23fanout-"))
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    inventory = Inventory(Settings(database_url=database_url, max_pairs_per_product=100))
    inventory.upgrade_schema()
    inventory.seed(random_seed=23)
    inventory.release(1)
    items = [i.id for i in inventory.complete_products()[0].items]
    with inventory.engine.begin() as connection:
        connection.execute(update(ItemAvailabilityRow.__table__).values(available_count=START_COUNT))
    assert len(sizes) * args.rounds <= len(items), "one size per round: fewer rounds"

    table = {("bare websockets", n): r for n, r in baseline_rounds(sizes, args.rounds).items()}
    for mode in modes:
        inventory.seed(random_seed=23, reset=True)
        inventory.release(1)
        with inventory.engine.begin() as connection:
            connection.execute(update(ItemAvailabilityRow.__table__).values(available_count=START_COUNT))
        table.update({(f"store, {mode}", n): r for n, r in store_rounds(mode, database_url, sizes, args.rounds,
                                                                         items).items()})

    print(f"sale -> stock_change on every socket, {args.rounds} rounds, {CLIENT_PROCESSES} client processes")
    print(f"{'':28}{'sockets':>8}{'p50 ms':>9}{'p99 ms':>9}{'p99 x base':>11}{'client busy':>12}{'missed':>8}")
    for (name, count), (latencies, busy, missed) in table.items():
        base = percentile(table[("bare websockets", count)][0], 99)
        if not latencies:
            print(f"{name:28}{count:8}{'-':>9}{'-':>9}{'-':>11}{busy:12.0%}{missed:8}")
            continue
        p99 = percentile(latencies, 99)
        print(f"{name:28}{count:8}{statistics.median(latencies):9.1f}{p99:9.1f}{p99 / base:11.2f}{busy:12.0%}"
              f"{missed:8}")


if __name__ == "__main__":
    main()
