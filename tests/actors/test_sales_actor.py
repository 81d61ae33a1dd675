"""The drop engine as the store runs it, on the session's three-node cluster: the sales actor
killed in the middle of a drop, a retry across a crash, refusals at the edge that reach no
database, a restocked size selling again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from sneakers23 import assembly
from sneakers23.errors import SalesUnavailable
from sneakers23.cluster import RayReplication
from sneakers23.domain.purchases import Refusal
from sneakers23.inventory import Inventory
from tests.conftest import SEED
from harness import shop
from tests.support.cluster import ensure_released, reseed
from tests.support.shoppers import shopper_client
from harness.waiting import wait_for

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")
HOT = 3


def selling(settings) -> Inventory:
    """The inventory API as the CLI and the drops use it on a running store: through the sales actors."""
    return Inventory(settings, replication=RayReplication(), sales=assembly.ray_sales(settings))


def fresh_drop(settings, pairs: int) -> Inventory:
    inventory = reseed(settings, SEED)
    ensure_released(settings, 1)
    shop.set_available(inventory, HOT, pairs)
    actor = assembly.sales_actor(settings, 1)
    wait_for(lambda: ray.get(actor.available.remote(HOT)) == pairs, what="the sales actor to know the stock")
    return inventory


def buy_until_answered(inventory: Inventory, shopper_id: str, key: str, retries: list | None = None):
    """A shopper who asks again, with the same key, until the store answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return inventory.purchase(shopper_id, [HOT], key)
        except SalesUnavailable:
            assert time.monotonic() < deadline, "the store never answered"
            if retries is not None:
                retries.append(shopper_id)
            time.sleep(0.2)


def test_killing_the_sales_actor_in_the_middle_of_a_drop_loses_and_doubles_nothing(ray_store, ray_settings):
    database = fresh_drop(ray_settings, 100)
    inventory = selling(ray_settings)
    answers: dict[str, object] = {}
    retries: list[str] = []
    lock = threading.Lock()

    def shopper(number: int) -> None:
        result = buy_until_answered(inventory, f"crash-{number}", f"key-{number}", retries)
        with lock:
            answers[f"crash-{number}"] = result

    buyers = [threading.Thread(target=shopper, args=(n,)) for n in range(300)]
    actor = assembly.sales_actor(ray_settings, 1)
    started = ray.get(actor.read_stats.remote()).started_at
    with shop.database_stalled(database, HOT):  # its first batch waits in the middle of its commit
        for buyer in buyers:
            buyer.start()
        wait_for(lambda: ray.get(actor.read_stats.remote()).admitted >= 50, what="purchases admitted, waiting")
        ray.kill(actor, no_restart=False)  # a crash in the middle of the drop: Ray starts it again
    for buyer in buyers:
        buyer.join(120)
    assert len(answers) == 300
    assert retries, "some purchases were under way when it died, and were asked again"
    sold = sorted(shopper_id for shopper_id, result in answers.items() if result.ok)
    assert len(sold) == 100, "every pair sold, each once"
    assert {result.refusal for result in answers.values() if not result.ok} == {Refusal.SOLD_OUT}
    assert shop.available(database, HOT) == 0 and shop.order_count(database, item_id=HOT) == 100
    for shopper_id in sold[:10]:
        assert shop.order_count(database, shopper_id=shopper_id) == 1
    assert ray.get(assembly.sales_actor(ray_settings, 1).read_stats.remote()).started_at > started, "it did restart"
    database.close()


def test_a_retry_with_the_same_key_after_a_crash_returns_the_committed_purchase(ray_store, ray_settings):
    database = fresh_drop(ray_settings, 10)
    inventory = selling(ray_settings)
    first = inventory.purchase("amy", [HOT], "amy-key")
    ray.kill(assembly.sales_actor(ray_settings, 1), no_restart=False)
    again = buy_until_answered(inventory, "amy", "amy-key")
    assert first.ok and again.ok and again.replayed
    assert [u.order_id for u in again.units] == [u.order_id for u in first.units]
    assert shop.order_count(database, shopper_id="amy") == 1
    database.close()


def store_stats() -> list[dict]:
    return serve.get_app_handle("store").broadcast("stats").results(timeout_s=30)


def test_refusals_at_the_edge_reach_no_actor_and_no_database(store_url, ray_store, ray_settings):
    database = fresh_drop(ray_settings, 0)
    wait_for(lambda: 'value="3" disabled' in httpx.get(f"{store_url}/").text, what="the pages to show size 7 out")
    client = shopper_client(store_url)
    before, actor_before = store_stats(), ray.get(assembly.sales_actor(ray_settings, 1).read_stats.remote())
    for _ in range(50):
        refused = client.post(f"/api/items/{HOT}/purchase")
        assert (refused.status_code, refused.json()["error"]) == (409, "sold_out")
    after, actor_after = store_stats(), ray.get(assembly.sales_actor(ray_settings, 1).read_stats.remote())
    by_node = {stats["node_id"]: stats for stats in before}
    assert sum(s["refused_at_edge"] - by_node[s["node_id"]]["refused_at_edge"] for s in after) == 50
    assert sum(s["queries"] - by_node[s["node_id"]]["queries"] for s in after) == 0, "no database call"
    assert actor_after.answered_from_memory == actor_before.answered_from_memory, "no actor call"
    # With a key the purchase goes on to the actor (its earlier try may have sold the last pair):
    # refused there, from memory.
    keyed = client.post(f"/api/items/{HOT}/purchase", headers={"Idempotency-Key": uuid.uuid4().hex})
    assert keyed.json()["error"] == "sold_out"
    actor_keyed = ray.get(assembly.sales_actor(ray_settings, 1).read_stats.remote())
    assert actor_keyed.answered_from_memory == actor_after.answered_from_memory + 1
    # No statement for the purchase. (A reload of the ledger meanwhile, when a change made
    # elsewhere reaches it late, reads the product, its sizes and its sales: three, each time.)
    assert actor_keyed.queries - actor_after.queries == 3 * (actor_keyed.reloads - actor_after.reloads)
    database.close()


def test_a_restocked_size_sells_again(store_url, ray_store, ray_settings, ray_cluster):
    database = fresh_drop(ray_settings, 1)
    wait_for(lambda: 'value="3" disabled' not in httpx.get(f"{store_url}/").text, what="the pages to show size 7")
    client = shopper_client(store_url)
    assert client.post(f"/api/items/{HOT}/purchase").status_code == 200
    wait_for(lambda: 'value="3" disabled' in httpx.get(f"{store_url}/").text, what="the pages to show size 7 out")
    assert client.post(f"/api/items/{HOT}/purchase").json()["error"] in ("sold_out", "limit_reached")

    env = {**os.environ, "SNEAKERS23_DATABASE_URL": ray_settings.database_url, "RAY_ADDRESS": ray_cluster.address}
    restock = subprocess.run([str(SNEAKERS23), "restock", str(HOT), "5"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert restock.returncode == 0, restock.stderr
    assert restock.stdout.startswith(f"item {HOT} restocked: 5 left, level low")
    wait_for(lambda: 'value="3" disabled' not in httpx.get(f"{store_url}/").text, what="the pages to show it again")
    newcomer = shopper_client(store_url)
    bought = wait_for(lambda: newcomer.post(f"/api/items/{HOT}/purchase").status_code == 200, timeout=10,
                      what="the restocked size to sell")
    assert bought and shop.available(database, HOT) == 4
    database.close()


def test_where_the_store_is_closed_no_sales_actor_is_started(ray_store, ray_settings, monkeypatch):
    """A replica that outlives its store (draining after a stop, when the store's actors are gone)
    gets SalesUnavailable, and starts no sales actor with its old settings."""
    from sneakers23.actors import sales as sales_module
    from sneakers23.actors.sales import sales_actor_names, sales_name

    product_id = 424_242  # no actor of this product runs
    monkeypatch.setattr(sales_module, "REPLICATOR_NAME", "replicator-of-a-stopped-store")
    with pytest.raises(SalesUnavailable, match="the store is closed"):
        assembly.sales_actor(ray_settings, product_id)
    assert sales_name(product_id) not in sales_actor_names()
    monkeypatch.undo()

    def product_of_its_actor() -> int | None:
        try:
            return ray.get(assembly.sales_actor(ray_settings, 1).read_stats.remote(), timeout=30).product_id
        except ray.exceptions.ActorUnavailableError:
            return None  # (restarting: an earlier test killed it in the middle of a drop)

    assert wait_for(product_of_its_actor, timeout=60, what="product 1's sales actor") == 1, "where it runs, it is found"
