"""The drop engine in one process (no Ray), on SQLite and on PostgreSQL: admission in memory,
group commit, the redo of a refused batch, backpressure. (tests/actors/test_sales_actor.py runs
it as the Ray actor: crashes, retries, refusals at the edge, restocks.)"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from sqlalchemy import event

from sneakers23 import assembly
from sneakers23.actors.sales import ProductSales
from sneakers23.errors import SalesBusy, SalesUnavailable
from sneakers23.db import queries
from sneakers23.domain.purchases import Refusal
from sneakers23.errors import DatabaseUnavailable
from harness import shop
from harness.waiting import until
from tests.support import aio  # (asyncio.run in a thread: a Chromium test of the worker keeps a loop here)

HOT = 3  # product 1's size 7


@pytest.fixture
def drop(inventory):
    """Product 1 released, its size 7 down to 50 pairs."""
    inventory.release(1)
    shop.set_available(inventory, HOT, 50)
    return inventory


def commits_of(engine) -> list[int]:
    """Counts the transactions the engine commits, as the database sees them."""
    counted = [0]

    def seen(_connection):
        counted[0] += 1

    event.listen(engine, "commit", seen)
    return counted


def test_racing_buyers_sell_exactly_the_stock_even_beside_purchases_outside_the_engine(drop):
    async def race():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        outside: list = []

        def buy_outside():  # a CLI's or another process's purchases, straight to the database
            for n in range(40):
                outside.append(queries.purchase(drop.engine, f"outside-{n}", [HOT], None, 2))

        seller = threading.Thread(target=buy_outside)
        seller.start()
        inside = await asyncio.gather(*(sales.purchase(f"buyer-{n}", [HOT]) for n in range(300)))
        await asyncio.to_thread(seller.join)
        return inside, outside, sales.read_stats()

    inside, outside, stats = aio.run(race())
    sold = sum(r.ok for r in inside) + sum(r.ok for r in outside)
    assert sold == 50
    assert {r.refusal for r in inside + outside if not r.ok} <= {Refusal.SOLD_OUT}
    assert shop.available(drop, HOT) == 0 and shop.order_count(drop, item_id=HOT) == 50
    assert stats.pairs_sold == sum(r.ok for r in inside)


def test_group_commit_is_real_1000_purchases_in_at_most_100_transactions(drop):
    shop.set_available(drop, HOT, 2000)

    async def drop_of_1000():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        commits = commits_of(sales.engine)
        results = await asyncio.gather(*(sales.purchase(f"buyer-{n}", [HOT], f"key-{n}") for n in range(1000)))
        return results, commits[0], sales.read_stats()

    results, commits, stats = aio.run(drop_of_1000())
    assert all(r.ok for r in results)
    assert 1 <= commits <= 100, commits
    assert stats.transactions == stats.batches == commits and stats.redone == 0
    assert shop.available(drop, HOT) == 1000 and shop.order_count(drop, item_id=HOT) == 1000
    # every pair's count right after it sold is its own: 1999, 1998, … 1000
    assert sorted(r.units[0].available_count for r in results) == list(range(1000, 2000))


def test_a_batch_that_the_database_refuses_is_sold_purchase_by_purchase(drop):
    async def after_an_outside_change():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        shop.set_available(drop, HOT, 10)  # behind the ledger's back, and no change reaches it
        results = await asyncio.gather(*(sales.purchase(f"buyer-{n}", [HOT]) for n in range(30)))
        await sales.idle()
        queries = sales.read_stats().queries
        again = await sales.purchase("late", [HOT])  # the ledger, reloaded, knows it is out
        return results, again, queries, sales.read_stats()

    results, again, queries_before, stats = aio.run(after_an_outside_change())
    assert sum(r.ok for r in results) == 10
    assert [r.refusal for r in results if not r.ok] == [Refusal.SOLD_OUT] * 20
    assert stats.redone == 30 and stats.reloads >= 2
    assert again.refusal is Refusal.SOLD_OUT and stats.queries == queries_before, "refused from memory"
    assert shop.order_count(drop, item_id=HOT) == 10 and shop.available(drop, HOT) == 0


def test_refusals_and_replays_come_from_memory(drop):
    async def shoppers():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        first = await sales.purchase("amy", [HOT], "amy-1")
        await sales.idle()
        queries = sales.read_stats().queries
        answers = [
            await sales.purchase("amy", [HOT], "amy-1"),  # a retry: the same result
            await sales.purchase("amy", [HOT], "amy-2"),  # a second pair of one size
            await sales.purchase("amy", [HOT, 4], "amy-3"),  # past two pairs of one product
            await sales.purchase("bob", [999], "bob-1"),
            await sales.purchase("bob", [14], "bob-2"),  # product 2's: not this actor's to sell
        ]
        return first, answers, sales.read_stats().queries - queries

    first, (replay, second, third, unknown, elsewhere), queries = aio.run(shoppers())
    assert first.ok and replay.ok and replay.replayed and replay.units == first.units
    assert (second.refusal, third.refusal, unknown.refusal) == (Refusal.LIMIT_REACHED,) * 2 + (Refusal.UNKNOWN_ITEM,)
    assert elsewhere.refusal is Refusal.UNKNOWN_ITEM
    assert queries == 0
    assert shop.order_count(drop, shopper_id="amy") == 1


def test_past_the_queue_purchases_are_turned_away_busy(drop):
    async def stalled():
        sales = ProductSales(drop.settings.model_copy(update={"sales_queue_limit": 5}), 1, follow_changes=False)
        with shop.database_stalled(drop, HOT):
            waiting = [asyncio.ensure_future(sales.purchase(f"buyer-{n}", [HOT])) for n in range(5)]
            while sales.read_stats().admitted < 5:
                await asyncio.sleep(0.01)
            with pytest.raises(SalesBusy, match="try again"):
                await sales.purchase("one-too-many", [HOT])
        return await asyncio.gather(*waiting), sales.read_stats()

    results, stats = aio.run(stalled())
    assert all(r.ok for r in results) and stats.busy == 1
    assert shop.order_count(drop, item_id=HOT) == 5


def test_a_key_sent_again_while_its_purchase_commits_waits_for_the_same_answer(drop):
    async def twice():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        key = uuid.uuid4().hex
        answers = await asyncio.gather(sales.purchase("amy", [HOT], key), sales.purchase("amy", [HOT], key))
        return answers, sales.read_stats()

    (first, second), stats = aio.run(twice())
    assert (stats.admitted, stats.answered_from_memory) == (1, 0), "the second waited for the first's answer"
    assert first.ok and second.ok and first.units == second.units
    assert shop.order_count(drop, shopper_id="amy") == 1


def redo_whose_third_purchase_fails(drop, monkeypatch, error: Exception) -> tuple[list, list]:
    """60 purchases against the ledger's 50 pairs (10 refused from memory), 10 in the database: the
    batch of 50 is refused and redone purchase by purchase, and the third of them fails with `error`."""
    real_purchase = queries.purchase
    calls = []

    def purchase_until_the_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise error
        return real_purchase(*args, **kwargs)

    async def redo():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        shop.set_available(drop, HOT, 10)  # behind the ledger's back: the batch is refused, then redone
        monkeypatch.setattr(queries, "purchase", purchase_until_the_third)
        return await asyncio.gather(*(sales.purchase(f"buyer-{n}", [HOT]) for n in range(60)),
                                    return_exceptions=True)

    return aio.run(redo()), calls


def test_a_purchase_that_fails_in_a_redo_fails_alone(drop, monkeypatch):
    outcomes, _calls = redo_whose_third_purchase_fails(drop, monkeypatch, RuntimeError("a bad purchase"))
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(failed) == 1 and "bad purchase" in str(failed[0])
    assert sum(o.ok for o in outcomes if not isinstance(o, Exception)) == 10, "the others sold as they could"
    assert shop.order_count(drop, item_id=HOT) == 10


def test_a_redo_that_meets_the_database_away_stops_and_tells_the_rest_to_try_again(drop, monkeypatch):
    outcomes, calls = redo_whose_third_purchase_fails(drop, monkeypatch, DatabaseUnavailable("the database is away"))
    assert len(calls) == 3, "no purchase was tried after the database went away"
    assert sum(not isinstance(o, Exception) and o.ok for o in outcomes) == 2
    assert sum(isinstance(o, DatabaseUnavailable) for o in outcomes) == 48, "the rest of the batch"
    assert sum(not isinstance(o, Exception) and o.refusal is Refusal.SOLD_OUT for o in outcomes) == 10
    assert shop.order_count(drop, item_id=HOT) == 2


def test_a_change_that_arrives_while_the_ledger_reloads_is_kept(drop):
    async def restocked_during_the_load():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        loop = asyncio.get_running_loop()
        load, restocked = sales._load, []

        def load_then_a_restock_arrives():
            ledger = load()  # it reads 50 pairs; then a restock of 30 commits, and its change comes in
            if not restocked:
                with drop.engine.begin() as connection:
                    restocked.append(queries.restock(connection, HOT, 30))
                delivered = threading.Event()
                loop.call_soon_threadsafe(lambda: (sales._on_changes(restocked), delivered.set()))
                assert delivered.wait(5)
            return ledger

        sales._load = load_then_a_restock_arrives
        sales._changed_elsewhere()  # it reloads, with nothing waiting to be sold
        await sales.idle()
        return sales.available(HOT)

    assert aio.run(restocked_during_the_load()) == 80, "the restock is not lost behind the load"


def test_a_purchase_whose_commit_was_already_made_is_replayed_after_a_reload(drop):
    async def answer_lost_then_asked_again():
        sales = ProductSales(drop.settings, 1, follow_changes=False)
        # Its first try committed, but the answer was lost (the ledger never heard of it) ...
        first = queries.purchase(drop.engine, "amy", [HOT], "amy-key", 2)
        sales._stale = True  # ... which is why the ledger reloads before it commits again
        again = await sales.purchase("amy", [HOT], "amy-key")
        return first, again

    first, again = aio.run(answer_lost_then_asked_again())
    assert first.ok and again.ok and again.replayed and again.units == first.units
    assert shop.order_count(drop, shopper_id="amy") == 1


class _Call:
    """A fake actor call: answered when the test says."""

    def __init__(self):
        self.future = asyncio.get_running_loop().create_future()

    def __await__(self):
        return self.future.__await__()


class _Actor:
    def __init__(self, fail: bool = False):
        self.calls: list[tuple[list, _Call]] = []
        self.fail = fail
        self.purchase_many = self

    def remote(self, purchases):
        if self.fail:
            raise RuntimeError("the actor's queue is full")
        call = _Call()
        self.calls.append((purchases, call))
        return call


def test_a_web_replicas_purchases_go_to_the_actor_in_few_calls_and_every_one_is_answered(drop):
    from sneakers23.actors.sales import CALLS_UNDER_WAY
    from sneakers23.domain.purchases import PurchaseResult

    def answer(call: _Call, purchases: list) -> None:
        call.future.set_result([PurchaseResult.refused(Refusal.SOLD_OUT, HOT)] * len(purchases))

    async def many_buyers():
        sales = assembly.ray_sales(drop.settings, product_of=lambda _item: 1)
        actor = _Actor()
        sales._actor = lambda _product: actor
        buying = []
        for turn in range(CALLS_UNDER_WAY + 2):  # each loop turn's purchases, while no call comes back
            buying += [asyncio.ensure_future(sales.purchase_async(1, f"s{turn}-{n}", [HOT], None)) for n in range(20)]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        calls_at_most = [len(purchases) for purchases, _call in actor.calls]
        answer(*reversed(actor.calls[0]))  # one call comes back: the purchases held back go in one call
        await until(lambda: len(actor.calls) == CALLS_UNDER_WAY + 1, interval=0, what="the call of the purchases held back")
        held_back = len(actor.calls[-1][0])
        for purchases, call in actor.calls[1:]:
            answer(call, purchases)
        answers = await asyncio.gather(*buying)

        broken = assembly.ray_sales(drop.settings, product_of=lambda _item: 1)
        broken._actor = lambda _product: _Actor(fail=True)
        with pytest.raises(SalesUnavailable):
            await broken.purchase_async(1, "u", [HOT], None)
        return calls_at_most, held_back, answers, sales._calls[1].busy, broken._calls[1].busy

    calls_at_most, held_back, answers, calling, broken_calling = aio.run(many_buyers())
    assert calls_at_most == [20] * CALLS_UNDER_WAY, "one call per loop turn, and no more than its limit at once"
    assert held_back == 40, "the two turns held back went together"
    assert len(answers) == 20 * (CALLS_UNDER_WAY + 2) and all(a.refusal is Refusal.SOLD_OUT for a in answers)
    assert not calling and not broken_calling, "no call is left under way"


def test_stats_read_during_a_reload_show_whole_reloads(drop, monkeypatch):
    """A reload runs in a thread while the stats may be read: they count its statements with it once
    it is done (CI49 read two of a reload's three, and the reload not yet)."""
    from sneakers23.actors import sales as sales_module

    sales = ProductSales(drop.settings, 1, follow_changes=False)
    before = sales.read_stats()
    queries, reloads = before.queries, before.reloads
    halfway, go_on = threading.Event(), threading.Event()
    load_sales = sales_module.load_sales

    def a_slow_load(connection, product_id):
        connection.exec_driver_sql("SELECT 1")  # (one statement of the reload's, then a pause)
        halfway.set()
        assert go_on.wait(10)
        return load_sales(connection, product_id)

    monkeypatch.setattr(sales_module, "load_sales", a_slow_load)
    loading = threading.Thread(target=sales._load)
    loading.start()
    try:
        assert halfway.wait(10)
        during = sales.read_stats()
        assert (during.queries, during.reloads) == (queries, reloads)
    finally:
        go_on.set()
        loading.join(10)
    after = sales.read_stats()
    assert after.reloads == reloads + 1 and after.queries > queries + 1
