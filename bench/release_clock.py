"""A scheduled release's lateness: from its release time to the database having it released (its
product row's `updated_at`, written in the release's transaction). The release clock runs as the
store runs it (`start_store_actors`: a Ray actor, one node), on SQLite; each round schedules product
2 a second or two ahead, at a random phase of the clock's tick, and waits for it.

The baseline, in the same run and on the same database: this process sleeping until a release time
itself, then releasing product 1 at once through the same inventory API (a timer's floor: the wake
and the write, with no actor, no thread and no tick between).

    .venv/bin/python -m bench.release_clock [--rounds 20]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import ray
from sqlalchemy import select

from sneakers23.assembly import start_store_actors
from sneakers23.cluster import NAMESPACE
from sneakers23.db.models import ProductRow
from sneakers23.inventory import Inventory
from sneakers23.jobs.report import percentile
from sneakers23.settings import Settings

products_t = ProductRow.__table__


def released_late_ms(inventory: Inventory, product_id: int, at: datetime, most_s: float = 10.0) -> float:
    """How long after `at` the database had the product released (waits for it)."""
    deadline = time.monotonic() + most_s
    while time.monotonic() < deadline:
        with inventory.engine.connect() as connection:
            row = connection.execute(select(products_t.c.released, products_t.c.updated_at)
                                     .where(products_t.c.id == product_id)).one()
        if row.released:
            updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=timezone.utc)
            return (updated - at).total_seconds() * 1000
        time.sleep(0.01)
    raise SystemExit(f"bench: product {product_id} was not released within {most_s:.0f} s of its time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="s23bench-"))
    settings = Settings(database_url=f"sqlite:///{workdir / 'shop.db'}", cluster="none")
    inventory = Inventory(settings)
    inventory.upgrade_schema()
    inventory.seed(random_seed=23, reset=True)
    ray.init(num_cpus=2, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    rng = random.Random(23)
    clock, timer = [], []
    try:
        start_store_actors(settings)
        for _round in range(args.rounds):
            inventory.seed(random_seed=23, reset=True)  # (both products unreleased again)
            at = datetime.now(timezone.utc) + timedelta(seconds=1.0 + rng.uniform(0, 0.5))
            inventory.schedule_release(2, at)
            clock.append(released_late_ms(inventory, 2, at))
            at = datetime.now(timezone.utc) + timedelta(seconds=0.5 + rng.uniform(0, 0.5))
            time.sleep(max(0.0, (at - datetime.now(timezone.utc)).total_seconds()))
            inventory.release(1)
            timer.append(released_late_ms(inventory, 1, at))
    finally:
        inventory.close()
        ray.shutdown()

    def shown(values: list[float]) -> str:
        return (f"p50 {percentile(values, 50):6.1f} ms, p99 {percentile(values, 99):6.1f} ms, "
                f"max {max(values):6.1f} ms")

    print(f"{args.rounds} rounds, SQLite, one node")
    print(f"the release clock (store):  {shown(clock)}")
    print(f"a timer in this process:    {shown(timer)}  (baseline, same run)")
    print(f"ratio of the p50s: {percentile(clock, 50) / max(1e-9, percentile(timer, 50)):.1f}x")


if __name__ == "__main__":
    main()
