"""A queued drop's waiting room through the inventory, on SQLite and PostgreSQL: places taken (one per
account) once the release is scheduled, the pre-queue shuffled checkably at the release, shoppers
let in at a pace the stock allows, purchases only with a live admission (the database's guard),
turns that end unused giving their pairs back, and a keeper restarted from the rows that lets
nobody in twice."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text, update

from harness.waiting import wait_for
from sneakers23.db import waiting_rooms as place_rows
from sneakers23.db.sales import sell_claims
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.drops import DropMode
from sneakers23.domain.purchases import PurchaseResult, Refusal
from sneakers23.domain.sales import Claim
from sneakers23.domain.waiting_room import Stage
from sneakers23.errors import DropModeRefused, NotFound, QueueProofUsed, QueueRefused, QueueSignInRequired
from sneakers23.inventory import Inventory
from sneakers23.inventory.waiting_rooms import READ_AHEAD_S
from tests.conftest import SEED
from tests.inventory.test_draws import shoppers
from tests.inventory.test_shop import Recorded


@pytest.fixture
def queued(settings):
    """A seeded shop whose product 2 is a queue, scheduled an hour from now; the lines it publishes."""
    replication = Recorded()
    inventory = Inventory(settings, replication=replication)
    inventory.seed(random_seed=SEED)
    with inventory.engine.begin() as connection:  # (two pairs a size: a crowd a few more than the pairs is small)
        connection.execute(text("UPDATE item_availabilities SET available_count = 2, version = version + 1 "
                                "WHERE item_id IN (SELECT id FROM items WHERE product_id = 2)"))
    inventory.set_drop_mode(2, DropMode.QUEUE)
    yield inventory, replication.published
    inventory.close()


def lines(published) -> list[WaitingLine]:
    return [change for change in published if isinstance(change, WaitingLine)]


def account(n: int) -> str:
    return f"account-{n}"


def pairs_of(inventory, product_id: int) -> list[int]:
    """Each pair of the product, as its size's id (a size with 3 pairs: 3 times)."""
    product = next(p for p in inventory.complete_products() if p.id == product_id)
    return [item.id for item in product.items for _ in range(item.available_count)]


def test_a_place_is_one_per_account_once_the_release_is_scheduled_and_only_for_accounts(queued):
    inventory, published = queued
    with pytest.raises(QueueRefused, match="opens once its release time is set"):
        inventory.join_queue(account(1), 2)
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    with pytest.raises(QueueSignInRequired, match="one per person"):
        inventory.join_queue("a" * 64, 2)  # a guest's cookie
    with pytest.raises(QueueRefused, match="not sold through a queue"):
        inventory.join_queue(account(1), 1)
    with pytest.raises(NotFound):
        inventory.join_queue(account(1), 99)
    place = inventory.join_queue(account(1), 2, proof="a-solved-challenge")
    assert place.stage is Stage.PRE_QUEUE and len(place.entry) == 16
    with pytest.raises(QueueProofUsed):  # (a solution takes one place, whichever replica is asked)
        inventory.join_queue(account(2), 2, proof="a-solved-challenge")
    assert inventory.join_queue(account(1), 2) == place  # a second tab, another device: the same place
    # A queue that shoppers are in stays a queue.
    with pytest.raises(DropModeRefused, match="queue has 1 shopper in it"):
        inventory.set_drop_mode(2, DropMode.FIRST_COME)
    # The keeper publishes the line: one waiting, not opened.
    [line] = inventory.keep_waiting_rooms()
    assert (line.product_id, line.opened, line.waiting, line.sold_out) == (2, False, 1, False)
    assert lines(published)[-1] == line
    view = inventory.queue_for_shopper(2, account(1), line)
    assert view["place"] == {"entry": place.entry, "stage": "pre_queue", "waiting": 1, "sold_out": False}
    assert view["record"] is None and len(view["commitment"]) == 64


def test_the_release_shuffles_the_pre_queue_checkably_and_lets_shoppers_in_at_the_pace_and_stock(queued, settings):
    inventory, published = queued
    T = time.time()  # (the keeper's clock: the database's guard reads the real time)
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    pairs = pairs_of(inventory, 2)
    each = settings.max_pairs_per_product  # (a turn holds as many pairs as one shopper may buy)
    crowd = [account(n) for n in range(-(-len(pairs) // each) + 3)]  # three more than the turns the pairs allow
    for shopper in crowd:
        inventory.join_queue(shopper, 2)
    inventory.keep_waiting_rooms(now=T)
    # Before the release: nobody buys, let in or not.
    assert inventory.purchase(crowd[0], [pairs[0]]).refusal is Refusal.NOT_RELEASED
    inventory.release(2)
    with pytest.raises(QueueRefused, match="not shuffled yet"):
        inventory.verify_queue(2)
    opened, numbered = inventory.keep_waiting_rooms(now=T)
    assert opened.opened and opened.head == 0 and opened.waiting == len(crowd)
    # (the line again once the shuffle's numbers are written, a version on: a replica reads again a
    # tab whose place it read between the two, in the pre-queue of an opened line)
    assert numbered.version > opened.version and replace(numbered, version=opened.version) == opened
    assert inventory.verify_queue(2) == []
    record = inventory.queue_for_shopper(2, None)["record"]
    assert len(record["order"]) == len(crowd) and record["seed"]
    places = {shopper: inventory.queue_place(shopper, 2) for shopper in crowd}
    by_number = sorted(crowd, key=lambda shopper: places[shopper].number)
    assert [places[s].entry for s in by_number] == record["order"]  # the line is the published order
    assert by_number != crowd  # (arrival gained nothing)

    # Ten a second; a second later, ten are let in, the first ten of the line.
    inventory.set_queue_pace(2, 600)
    [moved] = inventory.keep_waiting_rooms(now=T + 1)
    let_in = by_number[:10]
    assert [inventory.queue_place(s, 2).stage for s in by_number[:11]] == [Stage.ADMITTED] * 10 + [Stage.QUEUE]
    assert moved.head == places[by_number[10]].number and moved.waiting == len(crowd) - 10
    view = inventory.queue_for_shopper(2, by_number[12], moved)["place"]
    assert (view["position"], view["ahead"], view["wait_s"]) == (3, 2, pytest.approx(0.3))

    # Only a shopper let in buys, once: the database's guard, on both of its paths.
    outsider = by_number[-1]
    assert inventory.purchase(outsider, [pairs[0]]).refusal is Refusal.NOT_ADMITTED
    assert "queue" in inventory.purchase(outsider, [pairs[0]]).message
    assert inventory.purchase(let_in[0], [pairs[0]]).ok
    assert inventory.purchase(let_in[0], [pairs[-1]]).refusal is Refusal.NOT_ADMITTED  # its turn is used
    assert inventory.queue_place(let_in[0], 2).stage is Stage.BOUGHT
    pair, other = pairs_of(inventory, 2)[0], pairs_of(inventory, 2)[-1]
    batch = [Claim(let_in[1], (pair,), f"key-{let_in[1]}", True), Claim(outsider, (pair,), f"key-{outsider}", True),
             Claim(let_in[1], (other,), f"again-{let_in[1]}", True)]  # (a turn buys once, even in one batch)
    committed = sell_claims(inventory.engine, settings.database_url, 2, batch, settings.max_pairs_per_product,
                            queued=True)
    first, second, third = committed.outcomes
    assert not committed.redone and isinstance(first, PurchaseResult) and first.ok  # (the others refused alone)
    assert second.refusal is third.refusal is Refusal.NOT_ADMITTED
    # Without the turns (a batch of another product's kind), the database's decrement refuses it all.
    refused = sell_claims(inventory.engine, settings.database_url, 2, [Claim(let_in[2], (other,), "k", True)],
                          settings.max_pairs_per_product)
    assert refused.redone and refused.outcomes[0].ok  # (sold alone, through its turn, by the purchase's rule)

    # Every pair left held by a live turn: sold out, nobody else let in, everyone waiting told.
    inventory.set_queue_pace(2, 100_000)
    [full] = inventory.keep_waiting_rooms(now=T + 2)
    left = len(pairs_of(inventory, 2))
    admitted = [s for s in crowd if inventory.queue_place(s, 2).stage is Stage.ADMITTED]
    assert len(admitted) == -(-left // each) and full.sold_out and full.waiting == len(crowd) - 3 - len(admitted) > 0
    assert inventory.queue_for_shopper(2, outsider, full)["place"]["sold_out"]
    assert inventory.keep_waiting_rooms(now=T + 2.5) == []  # (nothing moved: nothing sent)

    # A keeper started again (another process) reads the rows: nobody is let in twice, or loses a place.
    again = Inventory(settings, replication=Recorded())
    try:
        [first] = again.keep_waiting_rooms(now=T + 3)  # (a new keeper sends its line at once, newer)
        assert replace(first, version=full.version) == full and first.version > full.version
        assert [again.queue_place(s, 2) for s in crowd] == [inventory.queue_place(s, 2) for s in crowd]
        # The turns end unused: their pairs come back, and those still waiting are let in.
        turn_s = settings.queue_turn_minutes * 60
        [back] = again.keep_waiting_rooms(now=T + 2 + turn_s + 1)
        assert not back.sold_out and back.waiting == 0
        assert {again.queue_place(s, 2).stage for s in admitted} == {Stage.EXPIRED}
        assert [again.queue_place(s, 2).stage for s in by_number[-full.waiting:]] == [Stage.ADMITTED] * full.waiting
    finally:
        again.close()


def test_the_releases_line_goes_out_before_its_numbers_and_a_keeper_stopped_between_numbers_by_the_record(
        queued, settings, monkeypatch):
    """At the release the opened line is published first (every tab's first position waits for it;
    a channel replica tells them from the record alone), then the shuffle's numbers are written. A
    keeper stopped in between leaves the record and places with no number: the next one numbers them
    by the record, one locked meanwhile stays out, and the line is let in in the published order."""
    inventory, published = queued
    T = time.time()
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    made = dict(shoppers(inventory, 6))
    for shopper in made.values():
        inventory.join_queue(shopper, 2)
    inventory.keep_waiting_rooms(now=T)
    inventory.release(2)
    inventory.set_queue_pace(2, 60)  # one a second
    real = place_rows.numbered

    def stopped_before_the_numbers(connection, product_id, numbers):
        if numbers:
            raise RuntimeError("the keeper stopped here")
        real(connection, product_id, numbers)

    monkeypatch.setattr(place_rows, "numbered", stopped_before_the_numbers)
    with pytest.raises(RuntimeError, match="stopped here"):
        inventory.keep_waiting_rooms(now=T)
    monkeypatch.setattr(place_rows, "numbered", real)
    [opened] = [line for line in lines(published) if line.opened]  # (out, though its numbers were not written)
    assert opened.head == 0 and opened.waiting == 6
    order = inventory.queue_for_shopper(2, None)["record"]["order"]
    entry_of = {shopper: inventory.queue_place(shopper, 2).entry for shopper in made.values()}
    assert {inventory.queue_place(shopper, 2).number for shopper in made.values()} == {None}
    by_number = sorted(made.items(), key=lambda made_one: order.index(entry_of[made_one[1]]))
    (first_id, first), *rest = by_number
    inventory.lock_account(first_id)  # (the first in the shuffle, locked before its number was written)

    again = Inventory(settings, replication=Recorded())  # the keeper started again, in another process
    try:
        [line] = again.keep_waiting_rooms(now=T + 0.1)
        assert line.opened and line.waiting == 5 and line.head == 1  # (the locked one, number 0, is passed)
        assert [(again.queue_place(shopper, 2).stage, again.queue_place(shopper, 2).number) for _id, shopper in rest] \
            == [(Stage.QUEUE, order.index(entry_of[shopper])) for _id, shopper in rest]
        assert again.queue_place(first, 2).stage is Stage.REMOVED
        assert again.verify_queue(2) == []
        [_one_in] = again.keep_waiting_rooms(now=T + 1.5)  # (one a second, from the release as its row keeps it)
        assert [again.queue_place(shopper, 2).stage for _id, shopper in rest] == [Stage.ADMITTED] + [Stage.QUEUE] * 4
    finally:
        again.close()


def test_one_who_comes_after_the_release_queues_behind_in_arrival_order(queued):
    inventory, _published = queued
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    early = [account(n) for n in range(5)]
    for shopper in early:
        inventory.join_queue(shopper, 2)
    inventory.release(2)
    late = [account(n) for n in range(5, 8)]
    for shopper in late:
        assert inventory.join_queue(shopper, 2).stage is Stage.QUEUE
    inventory.set_queue_pace(2, 0)  # (paused: nobody let in)
    *_opened, line = inventory.keep_waiting_rooms(now=time.time())
    assert [inventory.queue_place(s, 2).number for s in late] == [5, 6, 7]
    assert inventory.queue_for_shopper(2, late[-1], line)["place"]["position"] == 8
    assert inventory.queue_for_shopper(2, late[-1], line)["place"]["wait_s"] is None  # (paused)


@pytest.mark.parametrize("stamped_early", [False, True])
def test_the_pre_queue_is_read_ahead_of_the_release_and_its_tick_reads_only_the_joins_since(queued, monkeypatch,
                                                                                          stamped_early):
    """The keeper reads every place still to take in as the release comes near (READ_AHEAD_S), so
    that the release's own tick, which the first positions wait for, reads only the places joined
    since: nobody who joined before it is left out of the shuffle. A join stamped earlier than that
    read (a web node's clock far behind the keeper's) is missing from the window: the pre-queue
    counted in the rows says so, and every place is read, as without the read ahead."""
    inventory, _published = queued
    release_at = datetime.now(timezone.utc) + timedelta(hours=1)
    inventory.schedule_release(2, release_at)
    early = [account(n) for n in range(6)]
    for shopper in early:
        inventory.join_queue(shopper, 2)
    reads = []
    real = place_rows.places_to_take
    monkeypatch.setattr(place_rows, "places_to_take", lambda connection, product_id, since: reads.append(since) or
                        real(connection, product_id, since))
    approach = release_at.timestamp() - READ_AHEAD_S
    inventory.keep_waiting_rooms(now=approach - 5)  # (a first tick reads them all)
    inventory.keep_waiting_rooms(now=approach - 1)  # (a window)
    inventory.keep_waiting_rooms(now=approach)  # the approach: all of them again
    inventory.keep_waiting_rooms(now=approach + 0.5)  # (a window)
    assert [since is None for since in reads] == [True, False, True, False]
    late = account(6)
    inventory.join_queue(late, 2)  # (after the approach's read, before the release)
    if stamped_early:
        with inventory.engine.begin() as connection:
            connection.execute(update(place_rows.places_t).where(place_rows.places_t.c.shopper_id == late)
                               .values(joined_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
    inventory.release(2)
    reads.clear()
    opened = inventory.keep_waiting_rooms(now=release_at.timestamp())[0]
    # The release's tick: only the joins since the approach's read (and all, when one is missing);
    # then, its line out, the shuffle's numbers written in a tick of their own (a window, as ever).
    assert [since is None for since in reads] == ([False, True] if stamped_early else [False]) + [False]
    assert opened.opened and opened.waiting == 7
    assert len(inventory.queue_for_shopper(2, None)["record"]["order"]) == 7
    assert {inventory.queue_place(s, 2).stage for s in [*early, late]} == {Stage.QUEUE}


def test_a_locked_account_loses_its_place_before_the_shuffle_in_line_and_in_its_turn(queued):
    inventory, _published = queued
    T = time.time()
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    made = shoppers(inventory, 5)
    for _account_id, shopper in made:
        inventory.join_queue(shopper, 2)
    inventory.keep_waiting_rooms(now=T)
    (early_id, early), *others = made
    entry = inventory.queue_place(early, 2).entry

    # Locked before the release: out of the pre-queue, and named among the shuffle's removed.
    inventory.lock_account(early_id)
    assert inventory.queue_place(early, 2).stage is Stage.REMOVED
    [line] = inventory.keep_waiting_rooms(now=T)  # (the lock moved the room: its keeper reads it again)
    assert line.waiting == 4
    inventory.release(2)
    inventory.set_queue_pace(2, 60)  # one a second
    [opened, _numbered] = inventory.keep_waiting_rooms(now=T)
    record = inventory.queue_for_shopper(2, None)["record"]
    assert entry not in record["order"] and len(record["order"]) == 4
    assert [(r["entry"], r["reason"]) for r in record["removed"]] == [(entry, "account locked")]
    assert inventory.verify_queue(2) == []
    by_number = sorted((s for s in others), key=lambda s: inventory.queue_place(s[1], 2).number)

    # After it: one in their turn and one in line are locked; the turn's pairs go back, and the
    # line moves past both.
    [_one_in] = inventory.keep_waiting_rooms(now=T + 1)
    (turn_id, in_turn), (line_id, in_line), *rest = by_number
    assert inventory.queue_place(in_turn, 2).stage is Stage.ADMITTED
    pair = pairs_of(inventory, 2)[0]
    inventory.lock_account(turn_id)
    inventory.lock_account(line_id)
    assert inventory.purchase(in_turn, [pair]).refusal is Refusal.NOT_ADMITTED
    [moved] = inventory.keep_waiting_rooms(now=T + 1)
    assert moved.waiting == 2 and moved.turns[0] == 0
    assert {inventory.queue_place(s, 2).stage for s in (in_turn, in_line)} == {Stage.REMOVED}
    assert inventory.queue_for_shopper(2, rest[0][1], moved)["place"]["position"] == 1
    # (the room read again lets nobody in ahead of its pace: CI45 on PostgreSQL saw one more let in
    # at once, with the pace's allowance counted anew from the release)
    [_next_in] = inventory.keep_waiting_rooms(now=T + 2)
    assert inventory.queue_place(rest[0][1], 2).stage is Stage.ADMITTED
    assert inventory.purchase(rest[0][1], [pair]).ok
    # A locked account takes no new place.
    [(newcomer_id, newcomer)] = shoppers(inventory, 1)
    inventory.lock_account(newcomer_id)
    with pytest.raises(QueueRefused, match="this account is locked"):
        inventory.join_queue(newcomer, 2)
    assert inventory.queue_place(newcomer, 2) is None
    # Unlocked, it finds its place gone: it does not come back.
    inventory.lock_account(line_id, locked=False)
    assert inventory.join_queue(in_line, 2).stage is Stage.REMOVED



@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_place_taken_while_its_account_is_being_locked_waits_for_the_lock_and_is_refused(queued, monkeypatch):
    """PostgreSQL lets two transactions run at once: the staff's lock of an account, which took its
    places out (it had none yet) and is still to commit, and a join of that account. The join waits
    for the lock's commit, then is refused: no locked account keeps a place its lock never saw."""
    inventory, _published = queued
    inventory.schedule_release(2, datetime.now(timezone.utc) + timedelta(hours=1))
    [(account_id, shopper)] = shoppers(inventory, 1)
    taken_out, commit = threading.Event(), threading.Event()
    locking_pid: list[int] = []
    take_out = place_rows.take_out

    def take_out_then_hold(connection, shopper_id):  # (the lock's own steps, its commit held back)
        taken = take_out(connection, shopper_id)
        locking_pid.append(connection.execute(text("SELECT pg_backend_pid()")).scalar())
        taken_out.set()
        assert commit.wait(30)
        return taken

    monkeypatch.setattr("sneakers23.inventory.accounts.waiting_rooms.take_out", take_out_then_hold)
    outcome: dict[str, object] = {}

    def run(name, action):
        try:
            outcome[name] = action()
        except Exception as error:  # (what the test looks at)
            outcome[name] = error

    def join_waits_for_the_lock() -> bool:
        with inventory.engine.connect() as looking:
            return looking.execute(text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                                   {"pid": locking_pid[0]}).scalar() > 0

    threads = [threading.Thread(target=run, args=("lock", lambda: inventory.lock_account(account_id)))]
    try:
        threads[0].start()
        assert taken_out.wait(30), "the lock took the places out"
        threads.append(threading.Thread(target=run, args=("join", lambda: inventory.join_queue(shopper, 2))))
        threads[1].start()
        wait_for(lambda: "join" in outcome or join_waits_for_the_lock(), timeout=10, what="the join to end or wait")
        assert "join" not in outcome, "the join waits for the lock's commit"
    finally:
        commit.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert outcome["lock"].locked, outcome
    assert isinstance(outcome["join"], QueueRefused) and "locked" in str(outcome["join"]), outcome
    assert inventory.queue_place(shopper, 2) is None
