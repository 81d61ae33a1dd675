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
import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import ray

from sneakers23.cluster import NAMESPACE, REPLICATOR_NAME, detached
from sneakers23.actors.node_cache import follow_node_cache
from sneakers23.db.engine import QueryCounter, make_engine, reading, translated_errors
from sneakers23.db.sales import load_sales, sell_claims
from sneakers23.domain.changes import AvailabilityChanged, Change
from sneakers23.domain.purchases import PurchaseResult
from sneakers23.domain.sales import Claim, SalesLedger, Waiting
from sneakers23.errors import DatabaseUnavailable, SalesBusy, SalesUnavailable, Sneakers23Error
from sneakers23.following import KeptDuringLoad
from sneakers23.group_commit import GroupCommit
from sneakers23.inventory import Inventory
from sneakers23.retries import patiently
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

MAX_BATCH = 1_000  # claims in one transaction
GATHER_S = 0.01  # how long a batch waits for more claims before it commits
PURCHASE_TIMEOUT_S = 10.0  # a buyer waits this long for its answer, then is told to try again
# A report's read of an actor's counts: the first may start the actor, which loads its product first
# (more than 10 s on a busy cluster: the `ray up` drill's stampede job, CI22). Nobody waits on it.
STATS_TIMEOUT_S = 60.0
CALLS_UNDER_WAY = 4  # calls to one product's actor that one client has under way at once


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
        # A reload runs in a thread: the stats count its statements with it once it is done, so that
        # a reading shows whole reloads (the queries of each, and their count, together).
        self._stats_lock = threading.Lock()
        self._load_began_at: int | None = None  # the statement count when the reload under way began
        self._ledger = patiently(self._load, f"sales of product {product_id}")
        # Claims not yet answered, by purchase key (a key sent again while its claim commits waits
        # for the same answer); they commit in groups: while one batch commits, the next gathers.
        self._answers: dict[tuple[str, str], tuple[Claim, asyncio.Future]] = {}
        self._claims = GroupCommit(self._commit_claims, max_batch=MAX_BATCH, gather_s=GATHER_S,
                                   before=self._reload_if_stale, on_cut_short=self._cut_short,
                                   cut_short=lambda: SalesUnavailable(
                                       "the purchase was cut short: try again with the same idempotency key"))
        self._stale = False  # the ledger may be behind the database: reload before the next batch
        self._arrived_during_load: KeptDuringLoad[Change] = KeptDuringLoad()
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
            return self._answers[decision.claim.purchase_key][1]
        if self._ledger.claims_waiting > self._settings.sales_queue_limit:  # only what would wait is turned away
            self._ledger.settle(decision, None)
            self.stats.busy += 1
            raise SalesBusy(f"too many purchases of product {self.product_id} are waiting: try again in a moment")
        self.stats.admitted += 1
        answer = self._claims.submit(decision)
        self._answers[decision.purchase_key] = (decision, answer)
        return answer

    async def _commit_claims(self, batch: list[Claim]) -> list[PurchaseResult | Exception | None]:
        """A batch of claims through the database, each one's outcome in order (None for a claim
        answered meanwhile: a reload found it sold, and replayed it)."""
        todo = [claim for claim in batch if claim.purchase_key in self._answers]
        if not todo:
            return [None] * len(batch)
        try:
            results, changes = await asyncio.to_thread(self._commit, todo)
        except Exception as error:  # nothing of the batch was sold
            results, changes = [error] * len(todo), []
        outcomes: dict[tuple[str, str], PurchaseResult | Exception] = {}
        for claim, outcome in zip(todo, results):
            del self._answers[claim.purchase_key]
            if isinstance(outcome, PurchaseResult):
                self._ledger.settle(claim, outcome)
            else:  # the batch's transaction failed, or, sold one by one, this one met the database away
                outcome = self._let_go(claim, outcome)
            outcomes[claim.purchase_key] = outcome
        for change in changes:  # each size's count and version after the batch
            self._ledger.apply(change)
        self._publish(changes)
        return [outcomes.get(claim.purchase_key) for claim in batch]

    def _cut_short(self, claims: list[Claim]) -> None:
        """Claims whose commit was cut short (the actor stopping): let go, so that a retry with the
        same key is admitted again rather than handed the failed answer."""
        for claim in claims:
            if self._answers.pop(claim.purchase_key, None) is not None:
                self._let_go(claim, DatabaseUnavailable("cut short"))

    def _let_go(self, claim: Claim, error: Exception) -> Exception:
        """A claim the database did not answer: let go, its buyer told to try again, and the ledger
        reloaded before the next batch (a commit whose answer was lost may have happened)."""
        self._stale = True
        self._ledger.settle(claim, None)
        return error if isinstance(error, Sneakers23Error) else DatabaseUnavailable(
            f"the sale could not be committed: {error}")

    def _commit(self, batch: list[Claim]) -> tuple[list[PurchaseResult | Exception], list[Change]]:
        """In a thread: the batch through the database's one way to sell claims (db/sales.py)."""
        committed = sell_claims(self.engine, self._settings.database_url, self.product_id, batch,
                                self._settings.max_pairs_per_product, self._ledger.queued)
        self.stats.transactions += committed.transactions
        self.stats.pairs_sold += sum(len(outcome.units) for outcome in committed.outcomes
                                     if isinstance(outcome, PurchaseResult) and outcome.ok and not outcome.replayed)
        if committed.redone:
            self._stale = True  # (the ledger admitted what the database refused: read it again)
            self.stats.redone += len(batch)
        else:
            self.stats.batches += 1
        return committed.outcomes, committed.changes

    def _publish(self, changes: list[Change]) -> None:
        # Only after the commit; a publish never raises (the caches heal by anti-entropy).
        if changes and self._replication is not None:
            self._replication.publish(changes)

    # --- the ledger and the database ---

    def _load(self) -> SalesLedger:
        with self._stats_lock:
            self._load_began_at = self._queries.count
        loaded = False
        try:
            with translated_errors(self._settings.database_url), reading(self.engine) as connection:
                product, sales = load_sales(connection, self.product_id)
            loaded = True
        finally:
            with self._stats_lock:
                self._load_began_at = None
                self.stats.reloads += loaded
        return SalesLedger(product, sales, self._settings.max_pairs_per_product)

    async def _reload_if_stale(self) -> None:
        """Before each batch, when the ledger may be behind: the database's state. The claims still
        waiting (no batch is under way) are carried over, on the event loop, at once, so that none
        admitted meanwhile is missed; one the database has already sold (a commit whose answer was
        lost) gets its replay; changes that arrive while it loads are applied on top (the load may
        have read before they committed). When the database is away, every claim waiting is let go."""
        if not self._stale:
            return
        self._stale = False
        try:
            ledger, arrived = await self._arrived_during_load.load(lambda: asyncio.to_thread(self._load))
        except Exception as error:
            self._stale = True
            log.warning("sales of product %s: %s", self.product_id, error)
            for claim, answer in list(self._answers.values()):
                del self._answers[claim.purchase_key]
                failed = self._let_go(claim, error)
                if not answer.done():
                    answer.set_exception(failed)
            raise
        except BaseException:
            self._stale = True
            raise
        for change in arrived:
            ledger.apply(change)
        for claim, answer in list(self._answers.values()):
            replay = ledger.replay(claim)
            if replay is not None:
                del self._answers[claim.purchase_key]
                if not answer.done():
                    answer.set_result(replay)
            else:
                ledger.hold(claim)
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
            self._arrived_during_load.note([change])
            if self._ledger.apply(change) and isinstance(change, AvailabilityChanged):
                self._changed_elsewhere()

    def _changed_elsewhere(self) -> None:
        self._stale = True
        self._claims.kick()  # (which reloads first, with or without purchases waiting)

    def _own(self, task: asyncio.Task) -> asyncio.Task:
        return keep(self._tasks, task)  # (its tasks end with the actor's process)

    # --- for ops and tests ---

    async def idle(self) -> None:
        """Returns once nothing is waiting to commit (and a reload due is done)."""
        await self._claims.idle()

    def read_stats(self) -> SalesStats:
        with self._stats_lock:
            self.stats.queries = self._queries.count if self._load_began_at is None else self._load_began_at
        return self.stats

    def available(self, item_id: int) -> int:
        return self._ledger.available(item_id)


# Task events (per-call records for the dashboard) cost CPU on every one of its many small calls.
SalesActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000, enable_task_events=False)(ProductSales)


def sales_actor(settings: Settings, product_id: int, replication):
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
    return detached(SalesActor, sales_name(product_id), max_pending_calls=2 * settings.sales_queue_limit).remote(
        settings, product_id, replication)


def started_sales_actor(settings: Settings, product_id: int, replication, timeout_s: float = 120.0) -> bool:
    """The product's sales actor started if it is not running, and its ledger loaded (waited for);
    True when it was started here. (The release clock starts them ahead of a drop's first purchase.)"""
    try:
        ray.get_actor(sales_name(product_id), namespace=NAMESPACE)
        return False
    except ValueError:
        pass
    ray.get(sales_actor(settings, product_id, replication).idle.remote(), timeout=timeout_s)
    return True


class RaySales:
    """The inventory's way to the sales actors: a purchase of one product's sizes goes to that
    product's actor (which commits and publishes it); its failures become one-line errors that say
    to try again (SalesBusy, SalesUnavailable, DatabaseUnavailable)."""

    def __init__(self, settings: Settings, replication: Callable[[], object], database: Callable[[], Inventory],
                 product_of: Callable[[int], int | None] | None = None):
        """`replication` makes what a sales actor it starts publishes through; `database`, an
        inventory on the database alone (to find an item's product, without `product_of`)."""
        self._settings = settings
        self._replication = replication
        self._database = database
        self._product_of = product_of or self._product_from_database
        self._products: dict[int, int] | None = None
        self._actors: dict[int, ray.actor.ActorHandle] = {}
        self._calls: dict[int, GroupCommit] = {}  # product -> its purchases, grouped into calls

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
        calls = self._calls.get(product_id)
        if calls is None:
            calls = self._calls[product_id] = GroupCommit(
                functools.partial(self._purchase_many, product_id), in_flight=CALLS_UNDER_WAY,
                cut_short=lambda: SalesUnavailable("the purchase was cut short: try again with the same idempotency key"))
        try:
            return await calls.ask((shopper_id, list(item_ids), key))
        except Exception as error:
            raise self._failure(product_id, error) from None

    async def _purchase_many(self, product_id: int, purchases: list) -> list:
        # (one timer for all the call's purchases: a call that fails or takes too long fails them all)
        return await asyncio.wait_for(self._actor(product_id).purchase_many.remote(purchases), PURCHASE_TIMEOUT_S)

    def stats(self, product_id: int) -> SalesStats:
        return ray.get(self._actor(product_id).read_stats.remote(), timeout=STATS_TIMEOUT_S)

    def _actor(self, product_id: int):
        actor = self._actors.get(product_id)
        if actor is None:
            actor = self._actors[product_id] = sales_actor(self._settings, product_id, self._replication())
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
            inventory = self._database()
            try:
                self._products = {item.id: product.id for product in inventory.complete_products()
                                  for item in product.items}
            finally:
                inventory.close()
        return self._products.get(item_id)
