"""The drop engine: one sales actor per product admits purchases in memory and commits them in
groups.

Why: every purchase used to be a database transaction of several round trips, a refusal for a
size sold out long ago included, and the hot size's row lock was held across them. Here the
product's sales actor (`sales-<product id>`, namespace sneakers23; detached, restarted on a
crash, placed by Ray) answers from its ledger (domain/sales.py) what it can refuse or replay, and
queues what it admits. While one batch commits, the next one gathers: one transaction sells them
all (db/sales.py). A buyer is answered only once its batch has committed. A batch that a guard of
the database refuses is sold again purchase by purchase, and the ledger is reloaded.

The ledger follows the database: it is loaded at every start, and it applies the changes its node
cache applies (sales, restocks, releases made elsewhere, and whatever anti-entropy heals).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import ray

from sneakers23.actors import NAMESPACE, REPLICATOR_NAME
from sneakers23.actors.node_cache import follow_node_cache
from sneakers23.cluster import RayReplication
from sneakers23.db import queries
from sneakers23.db.engine import QueryCounter, make_engine, reading, translated_errors
from sneakers23.db.sales import BatchRefused, commit_batch, load_sales
from sneakers23.domain.changes import AvailabilityChanged, Change
from sneakers23.domain.purchases import PurchaseResult
from sneakers23.domain.sales import Claim, SalesLedger, Waiting
from sneakers23.errors import DatabaseUnavailable, Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.retries import patiently
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

MAX_BATCH = 1_000  # claims in one transaction
GATHER_S = 0.01  # how long a batch waits for more claims before it commits
PURCHASE_TIMEOUT_S = 10.0  # a buyer waits this long for its answer, then is told to try again
CALLS_UNDER_WAY = 4  # calls to one product's actor that one client has under way at once


class SalesBusy(Sneakers23Error):
    """Too many purchases are waiting for this product: try again in a moment."""


class SalesUnavailable(Sneakers23Error):
    """The product's sales actor did not answer (it is restarting, or too slow): try again with
    the same idempotency key, which returns the purchase's result if it was committed."""


SALES_NAME_PREFIX = "sales-"


def sales_name(product_id: int) -> str:
    return f"{SALES_NAME_PREFIX}{product_id}"


def sales_actor_names() -> list[str]:
    """The names of the sales actors running on the joined cluster."""
    return sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                  if actor["namespace"] == NAMESPACE and actor["name"].startswith(SALES_NAME_PREFIX))


@dataclass
class SalesStats:
    product_id: int
    admitted: int = 0
    answered_from_memory: int = 0  # refusals and replays: no database
    refusals: dict[str, int] = field(default_factory=dict)
    busy: int = 0
    pairs_sold: int = 0
    batches: int = 0  # group commits
    redone: int = 0  # purchases sold one by one after a batch was refused
    transactions: int = 0  # write transactions: batches, and the purchases redone one by one
    queries: int = 0  # statements sent to the database, reads included
    reloads: int = 0
    started_at: float = field(default_factory=time.time)


class ProductSales:
    """One product's sales. Plain asyncio, so that it runs (and is tested) without Ray; `SalesActor`
    is this class as a Ray actor."""

    def __init__(self, settings: Settings, product_id: int, replication=None, follow_changes: bool = True):
        self._settings = settings
        self.product_id = product_id
        self._replication = replication
        self.engine = make_engine(settings.database_url)
        self._queries = QueryCounter(self.engine)
        self.stats = SalesStats(product_id)
        self._ledger = patiently(self._load, f"sales of product {product_id}")
        self._queue: list[Claim] = []
        self._answers: dict[tuple[str, str], asyncio.Future] = {}
        self._committing: asyncio.Task | None = None
        self._stale = False  # the ledger may be behind the database: reload before the next batch
        self._arrived_during_load: list[Change] | None = None
        self._followed = False  # (its first snapshot is what it has just loaded)
        self._tasks: set[asyncio.Task] = set()
        if follow_changes:
            self._own(asyncio.get_event_loop().create_task(
                follow_node_cache(self._on_snapshot, self._on_changes, carts=False)))

    # --- purchases ---

    async def purchase(self, shopper_id: str, item_ids: list[int], key: str | None = None) -> PurchaseResult:
        decision = self._decide(shopper_id, item_ids, key)
        return await asyncio.shield(decision) if isinstance(decision, asyncio.Future) else decision

    async def purchase_many(self, purchases: list[tuple[str, list[int], str | None]]) -> list:
        """Several purchases in one call: each one's result, or the error it met (as a value)."""
        outcomes = []
        for purchase in purchases:
            try:
                outcomes.append(self._decide(*purchase))
            except Sneakers23Error as error:
                outcomes.append(error)
        waiting = [outcome for outcome in outcomes if isinstance(outcome, asyncio.Future)]
        if waiting:
            await asyncio.wait(waiting)
        return [(outcome.exception() or outcome.result()) if isinstance(outcome, asyncio.Future) else outcome
                for outcome in outcomes]

    def _decide(self, shopper_id: str, item_ids: list[int], key: str | None) -> PurchaseResult | asyncio.Future:
        """The answer now (a refusal, a replay), or the future answer of a claim waiting to commit."""
        decision = self._ledger.admit(shopper_id, list(item_ids), key or uuid.uuid4().hex, keyed=key is not None)
        if isinstance(decision, PurchaseResult):
            self.stats.answered_from_memory += 1
            if not decision.ok:
                self.stats.refusals[str(decision.refusal)] = self.stats.refusals.get(str(decision.refusal), 0) + 1
            return decision
        if isinstance(decision, Waiting):  # the same purchase, sent again while it commits
            return self._answers[decision.claim.purchase_key]
        if self._ledger.claims_waiting > self._settings.sales_queue_limit:  # only what would wait is turned away
            self._ledger.settle(decision, None)
            self.stats.busy += 1
            raise SalesBusy(f"too many purchases of product {self.product_id} are waiting: try again in a moment")
        self.stats.admitted += 1
        answer = asyncio.get_running_loop().create_future()
        self._answers[decision.purchase_key] = answer
        self._queue.append(decision)
        self._commit_soon()
        return answer

    def _commit_soon(self) -> None:
        if self._committing is None or self._committing.done():
            self._committing = self._own(asyncio.get_running_loop().create_task(self._commit_waiting()))

    async def _commit_waiting(self) -> None:
        """Commit what is waiting, a batch at a time: while one commits, the next one gathers."""
        await asyncio.sleep(GATHER_S)  # a moment for more to join: a commit costs the same for 1 or 1,000
        while True:
            try:
                if self._stale:
                    await self._reload()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit_batch(batch)
            except Exception as error:  # the database is away: what waits cannot be sold now
                log.warning("sales of product %s: %s", self.product_id, error)
                failed, self._queue = self._queue, []
                self._let_go(failed, error)
                return

    async def _commit_batch(self, batch: list[Claim]) -> None:
        try:
            outcomes, changes = await asyncio.to_thread(self._commit, batch)
        except Exception as error:  # nothing of the batch was sold
            self._let_go(batch, error)
            return
        for claim, outcome in zip(batch, outcomes):
            if isinstance(outcome, PurchaseResult):
                self._ledger.settle(claim, outcome)
                self._answer(claim, result=outcome)
            else:  # sold one by one, this one met the database away
                self._let_go([claim], outcome)
        for change in changes:  # each size's count and version after the batch
            self._ledger.apply(change)
        self._publish(changes)

    def _let_go(self, claims: list[Claim], error: Exception) -> None:
        """Claims the database did not answer: let go, their buyers told to try again, and the
        ledger reloaded before the next batch (a commit whose answer was lost may have happened)."""
        self._stale = True
        if not isinstance(error, Sneakers23Error):
            error = DatabaseUnavailable(f"the sale could not be committed: {error}")
        for claim in claims:
            self._ledger.settle(claim, None)
            self._answer(claim, error=error)

    def _commit(self, batch: list[Claim]) -> tuple[list[PurchaseResult | Exception], list[Change]]:
        """In a thread: one transaction for the batch, or, when a guard refuses it, one per purchase
        (each purchase's outcome its own: one that fails fails alone; once the database is away,
        the rest are not tried, each try could wait out a timeout, and are told to try again)."""
        max_pairs = self._settings.max_pairs_per_product
        with translated_errors(self._settings.database_url):
            try:
                with self.engine.begin() as connection:
                    results, changes = commit_batch(connection, self.product_id, batch, max_pairs)
                self.stats.batches += 1
                self.stats.transactions += 1
                self.stats.pairs_sold += sum(len(result.units) for result in results)
                return results, changes
            except BatchRefused as refused:
                log.info("product %s: a batch of %d was refused (%s): selling them one by one",
                         self.product_id, len(batch), refused)
        self._stale = True
        outcomes: list[PurchaseResult | Exception] = []
        for claim in batch:
            try:
                with translated_errors(self._settings.database_url):
                    result = queries.purchase(self.engine, claim.shopper_id, list(claim.item_ids),
                                              claim.key if claim.keyed else None, max_pairs)
                self.stats.transactions += 1
                self.stats.pairs_sold += len(result.units) if result.ok and not result.replayed else 0
                outcomes.append(result)
            except DatabaseUnavailable as away:
                outcomes += [away] * (len(batch) - len(outcomes))
                break
            except Exception as error:
                outcomes.append(error)
        self.stats.redone += len(batch)
        changes = [change for outcome in outcomes if isinstance(outcome, PurchaseResult) and outcome.ok
                   for change in outcome.changes]
        return outcomes, changes

    def _answer(self, claim: Claim, result: PurchaseResult | None = None, error: Exception | None = None) -> None:
        answer = self._answers.pop(claim.purchase_key, None)
        if answer is None or answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)

    def _publish(self, changes: list[Change]) -> None:
        # Only after the commit; a publish never raises (the caches heal by anti-entropy).
        if changes and self._replication is not None:
            self._replication.publish(changes)

    # --- the ledger and the database ---

    def _load(self) -> SalesLedger:
        with translated_errors(self._settings.database_url), reading(self.engine) as connection:
            product, sales = load_sales(connection, self.product_id)
        self.stats.reloads += 1
        return SalesLedger(product, sales, self._settings.max_pairs_per_product)

    async def _reload(self) -> None:
        """Between batches: the database's state. The claims still waiting are carried over (on
        the event loop, at once, so that none admitted meanwhile is missed); one the database has
        already sold (a commit whose answer was lost) gets its replay; changes that arrive while it
        loads are applied on top (the load may have read before they committed)."""
        self._stale = False
        self._arrived_during_load = []
        try:
            ledger = await asyncio.to_thread(self._load)
        except BaseException:
            self._stale = True
            raise
        finally:
            arrived, self._arrived_during_load = self._arrived_during_load, None
        for change in arrived:
            ledger.apply(change)
        waiting, self._queue = self._queue, []
        for claim in waiting:
            replay = ledger.replay(claim)
            if replay is not None:
                self._answer(claim, result=replay)
            else:
                ledger.hold(claim)
                self._queue.append(claim)
        self._ledger = ledger

    def _on_snapshot(self, snapshot) -> None:
        for product in snapshot.products:
            if product.id == self.product_id:
                self._ledger.catch_up(product)
        if self._followed:  # the cache started again: what else changed, the database says
            self._changed_elsewhere()
        self._followed = True

    def _on_changes(self, changes: list[Change]) -> None:
        """The changes its node cache applied. Its own sales come back as changes it already holds;
        a newer count was made elsewhere (a restock, a purchase of several products' sizes, a
        reseed), and may come with orders the ledger has not seen: it reloads."""
        for change in changes:
            if self._arrived_during_load is not None:
                self._arrived_during_load.append(change)
            if self._ledger.apply(change) and isinstance(change, AvailabilityChanged):
                self._changed_elsewhere()

    def _changed_elsewhere(self) -> None:
        self._stale = True
        self._commit_soon()  # (which reloads first, with or without purchases waiting)

    def _own(self, task: asyncio.Task) -> asyncio.Task:
        return keep(self._tasks, task)  # (its tasks end with the actor's process)

    # --- for ops and tests ---

    async def idle(self) -> None:
        """Returns once nothing is waiting to commit (and a reload due is done)."""
        while self._committing is not None and not self._committing.done():
            await asyncio.shield(self._committing)

    def read_stats(self) -> SalesStats:
        self.stats.queries = self._queries.count
        return self.stats

    def available(self, item_id: int) -> int:
        return self._ledger.available(item_id)


# Task events (per-call records for the dashboard) cost CPU on every one of its many small calls.
SalesActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000, enable_task_events=False)(ProductSales)


def sales_actor(settings: Settings, product_id: int):
    """The product's sales actor: found by name, or started (detached: it outlives its caller) where
    the store runs. Where its replication actor is gone, the store was stopped: a replica still
    draining gets SalesUnavailable, and brings back no actor with its old settings."""
    try:
        return ray.get_actor(sales_name(product_id), namespace=NAMESPACE)
    except ValueError:
        pass
    try:
        ray.get_actor(REPLICATOR_NAME, namespace=NAMESPACE)
    except ValueError:
        raise SalesUnavailable(f"the sales of product {product_id} are not running: the store is closed") from None
    return SalesActor.options(name=sales_name(product_id), namespace=NAMESPACE, lifetime="detached",
                              get_if_exists=True, max_pending_calls=2 * settings.sales_queue_limit).remote(
        settings, product_id, RayReplication(wait=False))


class RaySales:
    """The inventory's way to the sales actors: a purchase of one product's sizes goes to that
    product's actor (which commits and publishes it); its failures become one-line errors that say
    to try again (SalesBusy, SalesUnavailable, DatabaseUnavailable)."""

    def __init__(self, settings: Settings, product_of: Callable[[int], int | None] | None = None):
        self._settings = settings
        self._product_of = product_of or self._product_from_database
        self._products: dict[int, int] | None = None
        self._actors: dict[int, ray.actor.ActorHandle] = {}
        self._waiting: dict[int, list] = {}  # product -> purchases waiting for the next call
        self._calling: dict[int, int] = {}  # product -> calls under way
        self._tasks: set[asyncio.Future] = set()

    def product_for(self, item_ids: list[int]) -> int | None:
        """The one product these sizes belong to; None when they span products or one is unknown."""
        products = {self._product_of(item_id) for item_id in item_ids}
        return products.pop() if len(products) == 1 and None not in products else None

    def purchase(self, product_id: int, shopper_id: str, item_ids: list[int], key: str | None) -> PurchaseResult:
        try:
            return ray.get(self._call(product_id, shopper_id, item_ids, key), timeout=PURCHASE_TIMEOUT_S)
        except Exception as error:
            raise self._failure(product_id, error) from None

    async def purchase_async(self, product_id: int, shopper_id: str, item_ids: list[int],
                             key: str | None) -> PurchaseResult:
        """The same, on an event loop (a web replica). A call to the actor costs more than the
        decision it carries, so purchases go in groups: a few calls at a time per product, and the
        purchases that arrive meanwhile go together in the next."""
        answer = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(product_id, [])
        waiting.append((shopper_id, list(item_ids), key, answer))
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._call_with_waiting, product_id)
        outcome = await answer  # (its call has the timeout: one timer for all its purchases)
        if isinstance(outcome, BaseException):
            raise self._failure(product_id, outcome) from None
        return outcome

    def _call_with_waiting(self, product_id: int) -> None:
        if self._calling.get(product_id, 0) >= CALLS_UNDER_WAY:
            return  # the next call to come back sends them
        waiting = self._waiting.pop(product_id, [])
        if not waiting:
            return
        answers = [purchase[3] for purchase in waiting]
        try:
            call = self._actor(product_id).purchase_many.remote([purchase[:3] for purchase in waiting])
        except Exception as error:  # the actor could not be found, or its queue is full
            self._answer_all(answers, [error] * len(answers))
            return
        self._calling[product_id] = self._calling.get(product_id, 0) + 1
        keep(self._tasks, asyncio.ensure_future(self._answer(product_id, call, answers)))

    async def _answer(self, product_id: int, call, answers: list[asyncio.Future]) -> None:
        outcomes: list = [SalesUnavailable("the purchase was cut short: try again with the same idempotency key")] \
            * len(answers)  # (what they hear if this is cancelled: every purchase is answered, whatever happens)
        try:
            outcomes = await asyncio.wait_for(call, PURCHASE_TIMEOUT_S)
        except Exception as error:  # the call itself failed, or took too long: every purchase in it did
            outcomes = [error] * len(answers)
        finally:
            self._calling[product_id] -= 1
            self._answer_all(answers, outcomes)
        if self._waiting.get(product_id):
            self._call_with_waiting(product_id)

    @staticmethod
    def _answer_all(answers: list[asyncio.Future], outcomes: list) -> None:
        for answer, outcome in zip(answers, outcomes):
            if not answer.done():
                answer.set_result(outcome)

    def stats(self, product_id: int) -> SalesStats:
        return ray.get(self._actor(product_id).read_stats.remote(), timeout=PURCHASE_TIMEOUT_S)

    def _actor(self, product_id: int):
        actor = self._actors.get(product_id)
        if actor is None:
            actor = self._actors[product_id] = sales_actor(self._settings, product_id)
        return actor

    def _call(self, product_id: int, shopper_id: str, item_ids: list[int], key: str | None):
        return self._actor(product_id).purchase.remote(shopper_id, item_ids, key)

    def _failure(self, product_id: int, error: Exception) -> Sneakers23Error:
        cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
        if isinstance(cause, Sneakers23Error):
            return cause
        if isinstance(cause, ray.exceptions.PendingCallsLimitExceeded):
            return SalesBusy(f"too many purchases of product {product_id} are waiting: try again in a moment")
        if isinstance(cause, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
            self._actors.pop(product_id, None)  # found again by name next time
        what = "took too long" if isinstance(cause, (TimeoutError, ray.exceptions.GetTimeoutError)) else "did not answer"
        return SalesUnavailable(f"the sales of product {product_id} {what}: try again with the same idempotency key")

    def _product_from_database(self, item_id: int) -> int | None:
        if self._products is None or item_id not in self._products:  # a size added since: look again
            inventory = Inventory(self._settings)
            try:
                self._products = {item.id: product.id for product in inventory.complete_products()
                                  for item in product.items}
            finally:
                inventory.close()
        return self._products.get(item_id)
