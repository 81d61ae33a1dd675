"""Queue channels: topic `queue:{product_id}`, joined by a signed-in shopper's tab on a queued drop's
page. The join takes the account's place in the waiting room (one per account: every tab and
device finds the same, inventory/waiting_rooms.py; a new place costs a fresh proof of work, sent
as the join's `altcha` parameter), and the tab is told its place at once and
again as the line moves: its position, the people ahead, the wait at the present pace (these at
most every POSITIONS_EVERY_S), a sell-out (at once); then its turn, with the time left, and how it
ended.

Each socket's place is computed here, from the line's summary this replica's live catalog holds
(`WaitingLine`, published by the keeper to every node) and the place's number: one summary per
move, however many wait. A place the line's head has passed (let in, or taken out) is read again
from the database, in one query for all of them. At the release, every pre-queue place's number
comes from the shuffle's record (one row) rather than from 10,000 places read again. Every tab of a
product is told TELLS_PER_TURN at a time, a turn of the event loop each, as the channel hub's
pushes go: 10,000 sends in one callback held the loop for 0.37 s.

While the line only moves positions, each tab is told at most POSITIONS_EVERY_S after it was last
told (`LastTold`: the tabs in the order they were told, those told longest ago first), at steps of
PACE_STEP_S: a tab's wait between two pushes is that interval whatever told it last (a join, a
read, a pass over every tab), not the interval and a pass's length (0.25-0.42 s at 10,000 tabs,
which kept the interval at 4 s for a 5 s target). A tab told in a pass over every tab counts as
told a little earlier, by its share of POSITIONS_SPREAD_S, so that the next ones are spread
rather than all due at once; so does one long overdue (the line stood still, then moved), at a
random point of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from typing import Protocol

from sneakers23.domain.accounts import Account, account_shopper_id, shops_as_account
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.fairness import ShuffleRecord
from sneakers23.domain.ids import parse_id
from sneakers23.domain.shopper_events import LineMoved, ShopperEvent
from sneakers23.domain.waiting_room import (SIGN_IN_TO_QUEUE, LinePlace, Stage, numbers_at_the_opening, place_view,
                                            turns_ended)
from sneakers23.domain.throttle import Throttle
from sneakers23.errors import (DatabaseUnavailable, NotFound, QueueProofUsed, QueueRefused, QueueSignInRequired,
                               SchemaMissing)
from sneakers23.serve import phoenix
from sneakers23.serve.proof_of_work import FIELD, ProofsOfWork
from sneakers23.serve.queue_places import LastTold, TabPlaces, news_in_the_database
from sneakers23.serve.shoppers import SESSION_COOKIE, SessionCookies
from sneakers23.tasks import InTurns, keep

log = logging.getLogger(__name__)

QUEUE_PREFIX = "queue:"
MAX_QUEUES_PER_SOCKET = 4
POSITIONS_EVERY_S = 4.5  # a waiting tab's new position, at most this often (the target: every 5 s; docs/performance.md)
POSITIONS_SPREAD_S = 2.0  # the tabs told in one pass are due again spread over this long
PACE_STEP_S = 0.05  # while the line moves, the tabs due are told this often (about 110 of 10,000 a step)
OVERDUE_S = 0.5  # a tab due longer ago than this is told at once, and its next spread (`_tell_due`)
TELLS_PER_TURN = 256  # tabs told in one turn of the event loop (as ChannelHub's pushes)
SIGN_IN = SIGN_IN_TO_QUEUE[0].upper() + SIGN_IN_TO_QUEUE[1:]


class QueueReads(Protocol):
    def line(self, product_id: int) -> WaitingLine | None: ...


class QueueWrites(Protocol):
    async def session_account_async(self, session_token: str) -> Account | None: ...

    async def queue_place_async(self, shopper_id: str, product_id: int) -> LinePlace | None: ...

    async def join_queue_async(self, shopper_id: str, product_id: int, proof: str | None = None) -> LinePlace: ...

    async def queue_places_async(self, product_id: int, shopper_ids: list[str]) -> dict[str, LinePlace]: ...

    async def queue_record_async(self, product_id: int) -> tuple[str, ShuffleRecord | None] | None: ...


def _error(reason: str, message: str) -> dict:
    return {"reason": reason, "message": message}


class QueueChannels:
    def __init__(self, live: QueueReads, inventory: QueueWrites, sessions: SessionCookies,
                 work: ProofsOfWork | None = None, attempts: Throttle | None = None):
        self._live = live
        self._inventory = inventory
        self._sessions = sessions
        # A place costs a fresh proof of work (a bot pays per place, as per draw entry), and one
        # client address may try to take so many an hour on this replica.
        self._work = work
        self._attempts = attempts
        self._places: dict[int, TabPlaces] = {}  # product -> each joined socket's place
        self._tabs: dict[int, dict[str, set]] = {}  # product -> account -> its joined sockets (places read again)
        # What each socket was last told: the frame (a string, which the garbage collector never
        # scans; 10,000 views kept as dicts made it scan them at every push, docs/performance.md).
        self._shown: dict[tuple[object, int], str] = {}
        self._topics: dict[object, set[int]] = {}  # a socket's queues (joined, or joining)
        self._reading: set[int] = set()  # products whose places are being read again
        self._lines: dict[int, WaitingLine] = {}  # the last line of each product told here
        self._turns_due: set[int] = set()  # products whose live turns are to be read again next
        self._last_told: dict[int, LastTold] = {}  # product -> its tabs, those told longest ago first
        self._moved_at: dict[int, float] = {}  # when each product's line last moved its positions (monotonic)
        self._rounds: dict[int, InTurns] = {}  # each product's tabs told their new positions as they fall due
        self._openings: set[int] = set()  # products released, their pre-queue tabs not yet told from the record
        self._telling: dict[int, InTurns] = {}  # each product's tabs told a part a turn
        self._to_tell: dict[int, _Pass] = {}  # each product's pass under way over every tab
        self._tell_again: set[int] = set()  # products told again meanwhile: another pass once this one ends
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def owns(topic: str) -> bool:
        return topic.startswith(QUEUE_PREFIX)

    # --- joining and leaving ---

    def join(self, connection, message: phoenix.Message) -> bool:
        product_id = parse_id(message.topic[len(QUEUE_PREFIX):])
        if product_id is None or product_id == 0:
            connection.send(phoenix.reply(message, "error", _error("bad_request", "a queue's topic is queue:PRODUCT_ID")))
            return False
        if len(self._topics.get(connection, ())) >= MAX_QUEUES_PER_SOCKET:
            connection.send(phoenix.reply(message, "error", _error("too_many", "a socket follows a few queues at most")))
            return False
        token = self._sessions.token(getattr(connection.websocket, "cookies", {}).get(SESSION_COOKIE))
        if token is None:
            connection.send(phoenix.reply(message, "error", _error("sign_in_required", SIGN_IN)))
            return False
        self._topics.setdefault(connection, set()).add(product_id)
        keep(self._tasks, asyncio.get_running_loop().create_task(self._take_place(connection, message, product_id, token)))
        return True

    async def _take_place(self, connection, message: phoenix.Message, product_id: int, token: str) -> None:
        line_before = self._live.line(product_id)  # (a line that moves while the place is read is not told to it)
        try:
            account = await self._inventory.session_account_async(token)
            if not shops_as_account(account):
                raise QueueSignInRequired(SIGN_IN)
            shopper_id = account_shopper_id(account.id)
            place = await self._inventory.queue_place_async(shopper_id, product_id)  # (a second tab's: no work)
            if place is None:
                unproven, proof = self._proof(connection, message)
                if unproven is not None:
                    self._refused(connection, message, product_id, *unproven)
                    return
                place = await self._inventory.join_queue_async(shopper_id, product_id, proof)
        except QueueSignInRequired as refused:
            self._refused(connection, message, product_id, "sign_in_required", str(refused))
            return
        except QueueProofUsed as refused:
            self._refused(connection, message, product_id, "proof_of_work", str(refused))
            return
        except (QueueRefused, NotFound) as refused:
            self._refused(connection, message, product_id, "queue_refused", str(refused))
            return
        except (DatabaseUnavailable, SchemaMissing) as error:
            log.warning("a queue's join failed: %s", error)
            self._refused(connection, message, product_id, "unavailable", "The queue cannot be joined right now: try again")
            return
        except Exception:  # (never a join left unanswered, counted as joining)
            log.exception("a queue's join failed")
            self._refused(connection, message, product_id, "error", "The queue could not be joined: try again")
            return
        if product_id not in self._topics.get(connection, ()):
            return  # (it left meanwhile)
        if product_id not in self._places:
            self._places[product_id] = TabPlaces()
        self._places[product_id][connection] = place
        self._tabs.setdefault(product_id, {}).setdefault(place.account, set()).add(connection)
        line = self._live.line(product_id)
        view = place_view(place, line, time.time())
        self._shown[(connection, product_id)] = _said(product_id, view)
        connection.send(phoenix.reply(message, "ok", view))
        self._told(connection, product_id)
        if line is not None:
            self._lines.setdefault(product_id, line)  # (what the tab was told: the next line is news against it)
            turn_ended = place.stage is Stage.ADMITTED and (line_before is None or turns_ended(line_before, line))
            if news_in_the_database(place, line) or turn_ended:  # (the line moved while it joined)
                self._read_soon(product_id, turn_ended)

    def _proof(self, connection, message: phoenix.Message) -> tuple[tuple[str, str] | None, str | None]:
        """(why a new place is not taken: its reason and words, None), or (None, its proof's
        challenge): the address within its hour's places, and a fresh proof of work in the join's
        `altcha` parameter."""
        client = getattr(connection.websocket, "client", None)
        if self._attempts is not None:
            wait_s = self._attempts.wait_s(client.host if client else "", time.monotonic())
            if wait_s > 0:
                return ("too_many", f"too many places asked for from your address: try again in {math.ceil(wait_s)} s"), None
        if self._work is None:
            return None, None
        params = message.payload if isinstance(message.payload, dict) else {}
        unproven, proof = self._work.taken(params.get(FIELD))
        return (None, proof) if unproven is None else (("proof_of_work", unproven), None)

    def _refused(self, connection, message: phoenix.Message, product_id: int, reason: str, said: str) -> None:
        self._forget(connection, product_id)
        connection.joined.discard(message.topic)  # (not joined: a join again is asked anew)
        connection.send(phoenix.reply(message, "error", _error(reason, said)))

    def rejoin(self, connection, message: phoenix.Message) -> None:
        product_id = parse_id(message.topic[len(QUEUE_PREFIX):])
        place = self._places.get(product_id, {}).get(connection)
        if place is None:  # (its first join's answer is on its way)
            connection.send(phoenix.reply(message, "error", _error("joining", "The queue is still joining: try again")))
            return
        connection.send(phoenix.reply(message, "ok", self._view(place, product_id)))
        self._told(connection, product_id)

    def handle(self, connection, message: phoenix.Message) -> None:
        connection.send(phoenix.reply(message, "error", _error("unknown_event", f"unknown event {message.event[:64]!r}")))

    def leave(self, connection, topic: str) -> None:
        product_id = parse_id(topic[len(QUEUE_PREFIX):])
        if product_id is not None:
            self._forget(connection, product_id)

    def _forget(self, connection, product_id: int) -> None:
        places = self._places.get(product_id)
        if places is not None:
            place = places.pop(connection, None)
            if not places:
                del self._places[product_id]
                self._lines.pop(product_id, None)  # (its next line is news again, a release among them)
                self._to_tell.pop(product_id, None)  # (its turns end by themselves)
                self._tell_again.discard(product_id)
                self._last_told.pop(product_id, None)
                self._moved_at.pop(product_id, None)
                for work in (self._telling, self._rounds):
                    if product_id in work and not work[product_id].running:
                        del work[product_id]
            elif product_id in self._last_told:
                self._last_told[product_id].forget(connection)
            tabs = self._tabs.get(product_id, {})
            if place is not None and place.account in tabs:
                tabs[place.account].discard(connection)
                if not tabs[place.account]:
                    del tabs[place.account]
                if not tabs:
                    del self._tabs[product_id]
        self._shown.pop((connection, product_id), None)
        topics = self._topics.get(connection)
        if topics is not None:
            topics.discard(product_id)
            if not topics:
                del self._topics[connection]

    # --- pushes ---

    def _view(self, place: LinePlace, product_id: int) -> dict:
        return place_view(place, self._live.line(product_id), time.time())

    def publish(self, events: list[ShopperEvent]) -> None:
        for event in events:
            if isinstance(event, LineMoved) and event.line.product_id in self._places:
                self._moved(event.line)

    def _moved(self, line: WaitingLine) -> None:
        product_id = line.product_id
        before = self._lines.get(product_id)
        self._lines[product_id] = line
        if line.opened and (before is None or not before.opened):
            self._openings.add(product_id)  # (the release: numbers from the record, once it is read)
        # A turn used or ended shows in the line's counts only: the live turns here are read again.
        turns_moved = before is not None and turns_ended(before, line)
        if self._places[product_id].with_news(line, turns_moved):
            self._read_soon(product_id, turns_moved)  # (a turn, a number: told as soon as read)
        if before is not None and line.opened and not before.opened and before.sold_out == line.sold_out:
            return  # (the release: every tab waited in the pre-queue, and is told its number from the record)
        if before is None or (before.opened, before.sold_out) != (line.opened, line.sold_out):
            self._tell_all(product_id)  # a sell-out or its end: every tab at once
            return
        # Only positions and waits moved: each tab told POSITIONS_EVERY_S after it was last told,
        # from the line as it is then (the line moves at every tick while letting in: a push per
        # tab each time would cost a core at 10,000 tabs, docs/performance.md).
        self._moved_at[product_id] = time.monotonic()
        rounds = self._rounds.get(product_id)
        if rounds is None:
            rounds = self._rounds[product_id] = InTurns(functools.partial(self._tell_due, product_id))
        rounds.start()

    def _tell_due(self, product_id: int) -> bool | float:
        """The tabs told POSITIONS_EVERY_S ago or more, TELLS_PER_TURN at most, told from the line
        as it is; whether more are due now, or PACE_STEP_S until the next look while the line has
        moved since the tabs were told (False once every tab was told since its last move)."""
        now = time.monotonic()
        last_told, places = self._last_told.get(product_id), self._places.get(product_id)
        if last_told is None or places is None:
            return False
        line = self._live.line(product_id)
        due = last_told.due(now - POSITIONS_EVERY_S, TELLS_PER_TURN)
        for at, connection in due:
            place = places.get(connection)
            if place is None:
                continue  # (it left meanwhile)
            # One due long ago (the line stood still, then moved: every tab at once) counts as told
            # at a random point of the spread, so that the next ones are spread, none later.
            earlier_s = random.uniform(0, POSITIONS_SPREAD_S) if at < now - POSITIONS_EVERY_S - OVERDUE_S else 0.0
            if line is None or not news_in_the_database(place, line):
                self._tell(connection, product_id, place, earlier_s)
            else:
                self._told(connection, product_id, earlier_s)  # (its place is read again, and told then)
        if len(due) == TELLS_PER_TURN:
            return True
        return PACE_STEP_S if now - self._moved_at.get(product_id, float("-inf")) < POSITIONS_EVERY_S else False

    def _tell_all(self, product_id: int) -> None:
        """Every tab of the product whose place the line shows (the others are read again): the
        first TELLS_PER_TURN now, the rest in the next turns of the loop. A tell that comes while a
        pass is going lets it go on (each part is told from the line as it is then), and starts
        another pass once it ends, for the tabs it had passed (what they were told already is not
        sent again)."""
        telling = self._telling.get(product_id)
        if telling is None:
            telling = self._telling[product_id] = InTurns(functools.partial(self._tell_some, product_id))
        if telling.running:
            self._tell_again.add(product_id)
            return
        self._to_tell[product_id] = self._every_tab(product_id)
        telling.start()

    def _every_tab(self, product_id: int) -> _Pass:
        return _Pass(list(self._places.get(product_id, {})))  # (the sockets alone: no pair for each, for the collector)

    def _tell_some(self, product_id: int) -> bool:
        """The next TELLS_PER_TURN tabs of the product's pass; whether more are waiting."""
        pending = self._to_tell.get(product_id)
        if pending is None:  # (its last tab left mid-pass; a tell since then is a pass of its own)
            return self._next_pass(product_id)
        line = self._live.line(product_id)  # (the line each view is made from)
        places = self._places.get(product_id, {})
        for k, connection in pending.next(TELLS_PER_TURN):
            place = places.get(connection)  # (None: it left meanwhile)
            if place is not None and (line is None or not news_in_the_database(place, line)):
                self._tell(connection, product_id, place, _earlier_s(k, len(pending.tabs)))
        return pending.told < len(pending.tabs) or self._next_pass(product_id)

    def _next_pass(self, product_id: int) -> bool:
        """At the end of a pass: another, from the first tab, when a tell came meanwhile."""
        if product_id not in self._tell_again:
            self._to_tell.pop(product_id, None)
            return False
        self._tell_again.discard(product_id)
        self._to_tell[product_id] = self._every_tab(product_id)
        return True

    def _read_soon(self, product_id: int, turns: bool = False) -> None:
        if product_id in self._reading:
            if turns:
                self._turns_due.add(product_id)  # (read once the read under way is done)
            return
        self._reading.add(product_id)
        keep(self._tasks, asyncio.get_running_loop().create_task(self._read_again(product_id, turns)))

    async def _read_again(self, product_id: int, turns: bool = False) -> None:
        """The places whose news the line cannot show, read again (all in one query), and told.
        One the database has no news of yet is asked for again at the line's next move (the
        keeper sends the line every few seconds). At the release, the pre-queue's numbers come
        from the shuffle's record first."""
        try:
            line = self._live.line(product_id)
            try:
                if product_id in self._openings:
                    await self._tell_shuffled(product_id)
                    self._openings.discard(product_id)  # (once: a tab left in the pre-queue is read below)
                    line = self._live.line(product_id)
                places = self._places.get(product_id, TabPlaces())
                stale = [] if line is None else sorted({places.get(connection).account
                                                        for connection in places.with_news(line, turns)})
                if not stale:
                    return
                fresh = await self._inventory.queue_places_async(product_id, stale)
            except (DatabaseUnavailable, SchemaMissing) as error:
                log.warning("reading a queue's places again failed: %s", error)
                return
            places, tabs = self._places.get(product_id, {}), self._tabs.get(product_id, {})
            for account, now in fresh.items():  # (the places read, not every tab: a few, at each move)
                for connection in list(tabs.get(account, ())):
                    if places.get(connection, now) != now:  # (one that left meanwhile is gone from both)
                        places[connection] = now
                        self._tell(connection, product_id, now)
        finally:
            self._reading.discard(product_id)
            if product_id in self._turns_due and product_id in self._places:
                self._turns_due.discard(product_id)
                self._read_soon(product_id, turns=True)

    async def _tell_shuffled(self, product_id: int) -> None:
        """The release: each pre-queue place told its number from the shuffle's record (one row,
        one pass over the tabs) rather than from 10,000 places read again. Those the line does not
        show in line (let in at the release's own tick, taken out before it) are left to be read."""
        places = self._places.get(product_id, {})
        if not any(place.stage is Stage.PRE_QUEUE for place in places.values()):
            return
        kept = await self._inventory.queue_record_async(product_id)
        line = self._live.line(product_id)  # (as it is now, after the read)
        if kept is None or kept[1] is None or line is None:
            return
        numbers = numbers_at_the_opening(kept[1])
        tabs = list(places)  # (the sockets alone: a send may close one meanwhile)
        for told, connection in enumerate(tabs):
            if told and told % TELLS_PER_TURN == 0:
                await asyncio.sleep(0)  # (a turn of the loop: no one callback sends to every tab)
                line = self._live.line(product_id) or line
            place = places.get(connection)
            if place is None or place.stage is not Stage.PRE_QUEUE or (number := numbers.get(place.entry)) is None:
                continue
            now = LinePlace(place.account, place.entry, Stage.QUEUE, number)
            if not news_in_the_database(now, line):
                places[connection] = now
                self._tell(connection, product_id, now, _earlier_s(told, len(tabs)))

    def _told(self, connection, product_id: int, earlier_s: float = 0.0) -> None:
        """The tab's place is told as the line is now: its next new position is due POSITIONS_EVERY_S
        on, less `earlier_s` (a tab of a pass over every tab: its share of POSITIONS_SPREAD_S, the
        pass's first the most, so that the next ones are spread)."""
        last_told = self._last_told.get(product_id)
        if last_told is None:
            last_told = self._last_told[product_id] = LastTold()
        last_told.told(connection, time.monotonic() - earlier_s)

    def _tell(self, connection, product_id: int, place: LinePlace, earlier_s: float = 0.0) -> None:
        self._told(connection, product_id, earlier_s)  # (told, if only that nothing is new)
        view = self._view(place, product_id)
        key = (connection, product_id)
        said = _said(product_id, view)
        if self._shown.get(key) == said:
            return
        self._shown[key] = said
        connection.send(said if "left_s" not in view else phoenix.push(f"{QUEUE_PREFIX}{product_id}", "place", view))


class _Pass:
    """A pass over every tab of a product (the sockets, in the order they joined)."""

    def __init__(self, tabs: list):
        self.tabs = tabs
        self.told = 0  # (the first `told` are done)

    def next(self, most: int) -> list[tuple[int, object]]:
        """The next tabs, `most` at most, each with its place in the pass (counted as told)."""
        start, self.told = self.told, min(len(self.tabs), self.told + most)
        return list(enumerate(self.tabs[start:self.told], start))


def _earlier_s(k: int, n: int) -> float:
    """How much earlier than now the k-th of n tabs told in one pass counts as told: its share of
    POSITIONS_SPREAD_S, so that the pass's tabs are due again spread, the first the soonest."""
    return POSITIONS_SPREAD_S * (1 - k / n)


def _said(product_id: int, view: dict) -> str:
    """A place's push, less the time left of a turn (which ticks by itself: not news)."""
    if "left_s" in view:
        view = {k: v for k, v in view.items() if k != "left_s"}
    return phoenix.push(f"{QUEUE_PREFIX}{product_id}", "place", view)
