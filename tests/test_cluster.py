"""The CLI on a running cluster: release and sell reach every node's cache; status reports them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import cached_counts, database_counts
from tests.support import cluster as cluster_support
from harness.waiting import wait_for

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")
NODES = ("head", "node_a", "node_b")

pytestmark = pytest.mark.usefixtures("ray_store")


@pytest.fixture(autouse=True)
def product_1_released(ray_store, ray_settings):
    cluster_support.ensure_released(ray_settings, 1)


def run(ray_cluster, settings, *args):
    env = {**os.environ, "SNEAKERS23_DATABASE_URL": settings.database_url, "SNEAKERS23_CLUSTER": "auto",
           "RAY_ADDRESS": ray_cluster.address}
    return subprocess.run([str(SNEAKERS23), *args], capture_output=True, text=True, env=env, timeout=120)


def test_sell_from_the_cli_reaches_every_nodes_cache(ray_cluster, ray_settings):
    counts = database_counts(ray_settings)
    item = max(range(1, 14), key=counts.get)  # product 1 is released for the Ray tests
    result = run(ray_cluster, ray_settings, "sell", str(item), "--count", "2")
    assert result.returncode == 0, result.stderr
    assert f"{counts[item] - 2} left" in result.stdout
    for node in NODES:
        wait_for(lambda node=node: cached_counts(node)[item] == counts[item] - 2, what=f"{node}'s cache")


def test_status_lists_every_node_with_its_lag(ray_cluster, ray_settings):
    def all_caught_up():
        result = run(ray_cluster, ray_settings, "status")
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()[3:] if not line.startswith(("sales ", "channels "))]
        return len(rows) == 3 and all(row[3] == "ready" and row[5] == "0" for row in rows) and result.stdout

    out = wait_for(all_caught_up, timeout=20, what="every cache at lag 0")
    assert out.startswith("database ") and "replication  alive" in out
    assert "through 2 relays, one a group of nodes" in out  # (the session's cluster: groups of two)
    assert sorted(line.split()[2] for line in out.splitlines()[3:] if not line.startswith(("sales ", "channels "))) == \
        ["head", "worker", "worker"]


def test_sqlite_is_refused_for_a_cluster_of_several_machines():
    from sneakers23.cluster import check_database_fits
    from sneakers23.errors import Sneakers23Error
    from sneakers23.settings import Settings

    one_machine = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}] * 3
    two_machines = one_machine + [{"Alive": True, "NodeManagerAddress": "10.0.0.2"}]
    sqlite, postgres = Settings(database_url="sqlite:///x.db"), Settings(database_url="postgresql+psycopg://h/db")
    check_database_fits(sqlite, one_machine)
    check_database_fits(postgres, two_machines)
    with pytest.raises(Sneakers23Error, match="spans 2 machines.*PostgreSQL"):
        check_database_fits(sqlite, two_machines)
    check_database_fits(sqlite, two_machines[:-1] + [{"Alive": False, "NodeManagerAddress": "10.0.0.2"}])


def test_changes_go_only_to_a_store_that_sells_from_the_same_database(ray_settings, ray_store, caplog):
    import ray

    from sneakers23.cluster import RayReplication
    from sneakers23.inventory import Inventory

    counts = database_counts(ray_settings)
    item = max(range(1, 14), key=counts.get)
    published = ray.get(ray_store.status.remote()).published
    elsewhere = Inventory(ray_settings, replication=RayReplication(database_url="sqlite:////elsewhere/other.db"))
    assert elsewhere.sell(item).sold == 1
    assert ray.get(ray_store.status.remote()).published == published, "nothing reached the other store"
    assert "sells from" in caplog.text and "another database" in caplog.text

    same = Inventory(ray_settings, replication=RayReplication(database_url=ray_settings.database_url))
    assert same.sell(item).sold == 1
    assert ray.get(ray_store.status.remote()).published == published + 1
    for node in NODES:  # both sales in every cache: the first by anti-entropy, the second published
        wait_for(lambda node=node: cached_counts(node)[item] == counts[item] - 2, what=f"{node}'s cache")
    elsewhere.close()
    same.close()
