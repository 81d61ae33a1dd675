"""Mock drops on the session's Ray cluster: stampedes, sell-offs, and a real Ray job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from tests.conftest import SEED
from harness import shop
from tests.support.cluster import ensure_released, reseed
from harness.waiting import wait_for

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")


def drop(ray_cluster, settings, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "SNEAKERS23_DATABASE_URL": settings.database_url, "SNEAKERS23_CLUSTER": "auto",
           "RAY_ADDRESS": ray_cluster.address}
    env.pop("SNEAKERS23_SECRET_KEY", None)  # (the settings' alone, not a developer's shell's)
    if settings.secret_key:
        env["SNEAKERS23_SECRET_KEY"] = settings.secret_key
    return subprocess.run([str(SNEAKERS23), "drop", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def drop_shop(ray_store, ray_settings):
    """Seeds again, product 1 released, its size 7 (item 3) down to 50 pairs."""
    inventory = reseed(ray_settings, SEED)
    ensure_released(ray_settings, 1)
    shop.set_available(inventory, 3, 50)
    yield inventory
    inventory.close()


def test_a_stampede_of_2000_buyers_for_50_pairs_sells_exactly_50(ray_cluster, ray_settings, drop_shop):
    result = drop(ray_cluster, ray_settings, "stampede", "--buyers", "2000", "--concurrency", "64",
                  "--items", "3", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["attempts"], report["sold"], report["refusals"], report["errors"]) == (2000, 50, {"sold_out": 1950}, 0)
    assert report["ok"] and all(i["holds"] for i in report["invariants"])
    assert shop.available(drop_shop, 3) == 0 and shop.order_count(drop_shop, item_id=3) == 50


def test_the_database_invariant_holds_with_replication_messages_dropped(ray_cluster, ray_settings, ray_store,
                                                                        drop_shop):
    ray.get(ray_store.set_fault.remote(drop_probability=1.0))
    try:
        result = drop(ray_cluster, ray_settings, "stampede", "--buyers", "500", "--concurrency", "32",
                      "--items", "3", "--json")
    finally:
        ray.get(ray_store.set_fault.remote(0.0))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["sold"] == 50 and report["ok"]
    assert ray.get(ray_store.status.remote()).dropped > 0  # the switch really was on


def test_with_json_stdout_carries_the_report_alone(tmp_path, monkeypatch):
    """Ray's driver prints the raylet's warnings to stdout from a thread, at any moment of a drop, and a
    stampede's JSON report once began with one ("4 PYTHON worker processes have been started…")."""
    from click.testing import CliRunner

    from sneakers23.cli import cli
    from sneakers23.inventory import Inventory
    from sneakers23.settings import get_settings

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    env = {"SNEAKERS23_DATABASE_URL": url, "SNEAKERS23_CLUSTER": "none"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    runner = CliRunner()
    for args in (["db", "upgrade"], ["db", "seed", "--random-seed", "5"], ["release", "1"]):
        assert runner.invoke(cli, args).exit_code == 0
    few = Inventory(get_settings())
    for item_id in range(1, 40):  # two pairs a size: a sell-off of seconds, not of the whole seeded stock
        shop.set_available(few, item_id, 2)
    few.close()
    audit = Inventory.audit

    def noisy_audit(self):
        print("(raylet) WARNING: 4 PYTHON worker processes have been started on node: …")
        return audit(self)

    monkeypatch.setattr(Inventory, "audit", noisy_audit)
    try:
        result = runner.invoke(cli, ["drop", "sell-until-gone", "--per-tick", "50", "--tick-ms", "0", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["sold"] > 0
    assert result.stderr.count("(raylet) WARNING") == 2  # before and after: moved, not lost


def test_sell_until_gone_empties_every_size_and_every_shopper_sees_it_go(
    ray_cluster, ray_settings, store_url, drop_shop, phoenix_client
):
    for item_id in range(1, 14):
        shop.set_available(drop_shop, item_id, 3)
    client = phoenix_client("product:1")
    wait_for(lambda: client.of("join_ok", topic="product:1"), what="the join")
    result = drop(ray_cluster, ray_settings, "sell-until-gone", "--per-tick", "10", "--tick-ms", "50")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sold out!" in result.stderr and "[ok] pairs sold" in result.stdout
    assert all(shop.available(drop_shop, item_id) == 0 for item_id in range(1, 14))
    # What the page shows: its socket may have reconnected under load (a heartbeat late by 300 ms),
    # and then the rejoin's reply is what tells it.
    def sizes_not_shown_out():
        return sorted(i for i in range(1, 14) if client.levels("product:1").get(i) != "out")

    try:
        wait_for(lambda: not sizes_not_shown_out(), timeout=20, what="every size shown as out")
    except AssertionError as error:
        raise AssertionError(f"{error}: not out {sizes_not_shown_out()}, the page's levels "
                             f"{client.levels('product:1')}, its socket opened {len(client.of('open'))} times") from None
    assert client.of("stock_change", topic="product:1"), "no push at all reached the page"


def test_a_drop_runs_as_a_ray_job(ray_cluster, ray_settings, drop_shop, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the cluster has token authentication on
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    job = client.submit_job(
        entrypoint=f"{sys.executable} -m sneakers23.jobs.drop stampede --buyers 120 --concurrency 8 --items 3",
        runtime_env={"env_vars": {"SNEAKERS23_DATABASE_URL": ray_settings.database_url}},
    )
    wait_for(lambda: client.get_job_status(job) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED},
             timeout=180, interval=0.5, what="the job to end")
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    assert "pairs sold          50" in logs and "[ok] no shopper over the limits" in logs
    assert "buyers: " in logs  # progress while it ran
    assert shop.order_count(drop_shop, item_id=3) == 50


def test_bad_drop_input_is_one_clear_line(ray_cluster, ray_settings, drop_shop):
    for args, message in ((["stampede", "--buyers", "10", "--items", "999"], "no item 999"),
                          (["stampede", "--buyers", "10", "--items", "x"], "not a list of item ids"),
                          (["stampede", "--buyers", "0"], "--buyers")):
        result = drop(ray_cluster, ray_settings, *args)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
