"""A stampede of buyers for one hot size, on PostgreSQL, through the running store's cluster.

Starts a throwaway PostgreSQL server (the machine's binaries), the store on it (`sneakers23 serve`),
puts `--pairs` pairs on one size, and runs `sneakers23 drop stampede` against it.

    .venv/bin/python -m bench.stampede_postgres [--buyers 10000] [--pairs 500] [--concurrency 200] [--via api]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

from bench.servers import free_port, start_store
from sneakers23.db.models import ItemAvailabilityRow
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from tests.support import postgres

HOT_ITEM = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--via", choices=["api", "http"], default="api")
    args = parser.parse_args()

    server = postgres.start(postgres.find_bindir())
    store = None
    try:
        settings = Settings(database_url=server.url)
        inventory = Inventory(settings)
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        inventory.release(1)
        with inventory.engine.begin() as connection:
            connection.execute(update(ItemAvailabilityRow.__table__)
                               .where(ItemAvailabilityRow.__table__.c.item_id == HOT_ITEM)
                               .values(available_count=args.pairs, version=ItemAvailabilityRow.__table__.c.version + 1))
        port = free_port()
        store = start_store("haproxy+throughput", server.url, port)
        env = {**os.environ, "SNEAKERS23_DATABASE_URL": server.url, "SNEAKERS23_CLUSTER": "auto",
               "RAY_TMPDIR": store.env["RAY_TMPDIR"]}
        result = subprocess.run(
            [str(Path(sys.executable).with_name("sneakers23")), "drop", "stampede", "--buyers", str(args.buyers),
             "--concurrency", str(args.concurrency), "--items", str(HOT_ITEM), "--via", args.via,
             "--url", f"http://127.0.0.1:{port}", "--json"],
            capture_output=True, text=True, env=env)
        if result.returncode not in (0, 1):
            raise SystemExit(result.stderr[-3000:])
        report = json.loads(result.stdout)
        print(f"stampede on PostgreSQL: {args.buyers} buyers, {args.pairs} pairs of one size, "
              f"concurrency {args.concurrency}, via {args.via}")
        print(f"  sold {report['sold']} in {report['seconds']:.1f}s; refusals {report['refusals']}; "
              f"errors {report['errors']}")
        print(f"  pairs sold per second    {report['pairs_per_second']:.0f} (sold out after {report['selling_seconds']:.1f}s)")
        print(f"  attempts per second      {report['attempts'] / report['seconds']:.0f}")
        print(f"  latency p50 / p99        {report['latency_p50_ms']:.1f} / {report['latency_p99_ms']:.1f} ms")
        print(f"  refusal latency p99      {report['refusal_latency_p99_ms']:.1f} ms, once sold out "
              f"{report['sold_out_refusal_latency_p99_ms']:.1f} ms")
        print(f"  invariants               {'all hold' if report['ok'] else 'FAILED'}")
        inventory.close()
    finally:
        if store is not None:
            store.stop()
        server.stop()


if __name__ == "__main__":
    main()
