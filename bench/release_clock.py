"""A scheduled release's lateness: from its release time to a reader of the database first seeing it
released (read every millisecond). The release clock runs as the store runs it
(`start_store_actors`: a Ray actor, one node), on SQLite; each round schedules product 2 1.0-1.5 s
ahead, at a random phase of the clock's tick, and waits for it.

The baseline, in the same run and on the same database: this process sleeping until a release time
itself, then releasing product 1 at once through the same inventory API, timed to its commit
returning (a timer's floor: the wake, the write and the commit, with no actor, no thread and no
tick between; the clock's arm adds the reader's poll, at most a millisecond and a read).

    .venv/bin/python -m bench.release_clock [--rounds 30]
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
    """How long after `at` a reader of the database first saw the product released (read every
    millisecond from just before `at`: the release's write and commit are in it, both arms alike)."""
    deadline = time.monotonic() + most_s
    time.sleep(max(0.0, (at - datetime.now(timezone.utc)).total_seconds() - 0.05))
    with inventory.engine.connect() as connection:
        while time.monotonic() < deadline:
            if connection.execute(select(products_t.c.released).where(products_t.c.id == product_id)).scalar():
                return (datetime.now(timezone.utc) - at).total_seconds() * 1000
            connection.rollback()  # (a fresh snapshot each read)
            time.sleep(0.001)
    raise SystemExit(f"bench: product {product_id} was not released within {most_s:.0f} s of its time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
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
            timer.append((datetime.now(timezone.utc) - at).total_seconds() * 1000)  # (its commit returned: seen)
    finally:
        inventory.close()
        ray.shutdown()

    def shown(values: list[float]) -> str:
        return (f"p50 {percentile(values, 50):6.1f} ms, p90 {percentile(values, 90):6.1f} ms, "
                f"max {max(values):6.1f} ms")

    print(f"{args.rounds} rounds, SQLite, one node")
    print(f"the release clock (store):  {shown(clock)}")
    print(f"a timer in this process:    {shown(timer)}  (baseline, same run)")
    print(f"ratio of the p50s: {percentile(clock, 50) / max(1e-9, percentile(timer, 50)):.1f}x")


if __name__ == "__main__":
    main()
