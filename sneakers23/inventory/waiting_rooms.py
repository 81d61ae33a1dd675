"""The waiting rooms of queued drops: shoppers take their places (one per account), and a keeper lets
them in at a pace the stock allows (domain/waiting_room.py has the rules).

Where the state lives, and why: in the database (db/waiting_rooms.py). Every place, number,
admission and expiry is a row, written before anyone is told; a purchase of a queued drop uses its
buyer's admission in the sale's transaction. So a node lost, or the keeper's actor restarted,
loses nothing: the next keeper rebuilds its room from the rows (`WaitingRoom.restore`), nobody
loses a place, and an admission marked once is never made again. (At the release, the shuffle's
record is the row written before anyone is told: the places' numbers follow it, before anyone is
let in, and a keeper that stopped between the two reads them from the record.) The keeper is one
actor per cluster (the release clock calls `keep_waiting_rooms` every tick); what it keeps in
memory is only what it read, and the pace's few tokens. What shoppers see moves as the line's summary
(`WaitingLine`), a change published to every node's cache like any other, from which each socket
shows its own place.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from sneakers23.db import accounts as account_rows
from sneakers23.db import queries
from sneakers23.db import waiting_rooms as rows
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.accounts import account_of_shopper
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.fairness import ShuffleRecord, verify
from sneakers23.domain.purchases import signed_in
from sneakers23.domain.waiting_room import (JoinRefusal, LinePlace, Stage, WaitingRoom, default_pace, join_refused,
                                            numbers_at_the_opening, place_view)
from sneakers23.errors import NotFound, QueueProofUsed, QueueRefused, QueueSignInRequired
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

ENTRY_ID_BYTES = 8  # 16 hex digits: opaque, and too many to guess another's
SEND_AGAIN_S = 3.0  # a line that did not move is sent again this often: a node that missed it catches up
JOINS_SETTLE_S = 10.0  # a place joined is looked for this long (its join may commit after later ones)...
FULL_READ_EVERY_S = 30.0  # ...and every place still to take in, this often (one whose join took longer)
# ...and this long before a scheduled release, so that the release's own tick, which the first
# positions wait for, reads only the places joined since (10,000 read again: 90 of its 200 ms).
READ_AHEAD_S = 2.0


@dataclass
class _Kept:
    """A room as its keeper holds it."""

    room: WaitingRoom
    commitment: str
    read_at: float = float("-inf")  # when every place still to take in was last read...
    read_since: datetime | None = None  # ...and from when a join may have committed after that read
    sent: WaitingLine | None = None
    sent_at: float = 0.0
    # The numbers the release's shuffle gave, not written yet: the opened line is published first
    # (every tab's first position waits for it; the record alone tells them), then these are
    # written, before anyone is let in (10,000 rows: 50-200 ms of the release's tick).
    owed: dict[str, int] = field(default_factory=dict)


class WaitingRooms:
    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings
        self._kept: dict[int, _Kept] = {}  # (only the keeper's inventory keeps any)

    # --- shoppers ---

    def join_queue(self, shopper_id: str, product_id: int, proof: str | None = None) -> LinePlace:
        """The shopper's place in the product's waiting room: taken now, or the one it holds (one
        per account: a second tab or device finds the same). `proof`: the challenge of the proof of
        work it came with (serve/proof_of_work.py), taken once across the store. Raises
        QueueRefused with why."""
        for _attempt in range(3):  # (an entry id taken already: another is drawn)
            with self.database.transaction() as unit:
                state = queries.product_row_state(unit.connection, product_id)  # (NotFound for no such product)
                held = rows.place_of(unit.connection, product_id, shopper_id)
                if held is not None:
                    return held
                account_id = account_of_shopper(shopper_id)
                locked = account_id is not None and account_rows.locked_held(unit.connection, account_id)
                refused = join_refused(product_id, state.drop_mode, state.release_at is not None, state.released,
                                       signed_in(shopper_id), locked)
                if refused is not None:
                    reason, message = refused
                    raise (QueueSignInRequired if reason is JoinRefusal.SIGN_IN_REQUIRED else QueueRefused)(message)
                if rows.proof_used(unit.connection, proof):
                    raise QueueProofUsed("this check that you are a person took a place already: reload the page")
                if rows.join(unit.connection, product_id, shopper_id, secrets.token_hex(ENTRY_ID_BYTES), proof):
                    return rows.place_of(unit.connection, product_id, shopper_id)
        raise QueueRefused("the place could not be taken: try again")

    async def join_queue_async(self, shopper_id: str, product_id: int, proof: str | None = None) -> LinePlace:
        return await self.database.in_thread(self.join_queue, shopper_id, product_id, proof)

    def queue_place(self, shopper_id: str, product_id: int) -> LinePlace | None:
        with self.database.reading() as connection:
            return rows.place_of(connection, product_id, shopper_id)

    async def queue_place_async(self, shopper_id: str, product_id: int) -> LinePlace | None:
        return await self.database.in_thread(self.queue_place, shopper_id, product_id)

    def sold_outside_turns(self, product_id: int) -> int:
        """Pairs of a queued product sold to accounts never let in (a rehearsal's check: none)."""
        with self.database.reading() as connection:
            return rows.sold_outside_turns(connection, product_id)

    def queue_places(self, product_id: int, shopper_ids: list[str]) -> dict[str, LinePlace]:
        """The places of these accounts (the tabs of a replica whose line moved past them)."""
        with self.database.reading() as connection:
            return rows.places_of(connection, product_id, shopper_ids)

    async def queue_places_async(self, product_id: int, shopper_ids: list[str]) -> dict[str, LinePlace]:
        return await self.database.in_thread(self.queue_places, product_id, shopper_ids)

    def queue_for_shopper(self, product_id: int, shopper_id: str | None, line: WaitingLine | None = None,
                          with_record: bool = True) -> dict:
        """The queue's JSON view: its commitment, its record once shuffled (unless left out: the
        page asks for its shopper's place alone), and the shopper's place (shown from `line`, the
        page's memory of the line). Raises NotFound for no queue."""
        with self.database.reading() as connection:
            room = rows.room(connection, product_id, with_record=with_record)
            if room is None:
                raise NotFound(f"product {product_id} is not sold through a queue")
            place = None if shopper_id is None else rows.place_of(connection, product_id, shopper_id)
        return {"product_id": product_id, "commitment": room.commitment,
                "record": None if room.record is None else room.record.as_dict(),
                "place": place_view(place, line)}

    async def queue_for_shopper_async(self, product_id: int, shopper_id: str | None,
                                      line: WaitingLine | None = None, with_record: bool = True) -> dict:
        return await self.database.in_thread(self.queue_for_shopper, product_id, shopper_id, line, with_record)

    def queue_record(self, product_id: int) -> tuple[str, ShuffleRecord | None] | None:
        """The queue's commitment, and its shuffle's record once the release came (None: no queue)."""
        with self.database.reading() as connection:
            room = rows.room(connection, product_id)
        return None if room is None else (room.commitment, room.record)

    async def queue_record_async(self, product_id: int) -> tuple[str, ShuffleRecord | None] | None:
        return await self.database.in_thread(self.queue_record, product_id)

    def verify_queue(self, product_id: int) -> list[str]:
        """What is wrong with the published shuffle of the product's pre-queue (nothing: [])."""
        with self.database.reading() as connection:
            room = rows.room(connection, product_id)
        if room is None:
            raise NotFound(f"product {product_id} is not sold through a queue")
        if room.record is None:
            raise QueueRefused(f"product {product_id}'s queue is not shuffled yet: its release has not come")
        return verify(room.record)

    # --- the staff ---

    def set_queue_pace(self, product_id: int, per_minute: float | None) -> None:
        """Shoppers let in a minute (None: the default pace, domain/waiting_room.default_pace)."""
        if per_minute is not None and not 0 <= per_minute <= 1_000_000:
            raise ValueError("a queue's pace is 0 to 1,000,000 shoppers a minute")
        with self.database.transaction() as unit:
            if not rows.set_pace(unit.connection, product_id, per_minute):
                raise NotFound(f"product {product_id} is not sold through a queue")

    def queue_figures(self) -> dict[int, dict[str, int]]:
        """Every waiting room's places by stage (the dashboard's)."""
        with self.database.reading() as connection:
            return rows.stage_counts(connection)

    # --- the keeper ---

    def keep_waiting_rooms(self, now: float | None = None) -> list[WaitingLine]:
        """One tick of every queued drop's room whose release is scheduled or made: the new places
        read, the pre-queue shuffled at the release, admissions and expiries at the pace and the
        stock, all written, then the line published when it moved (or again, now and then).
        Returns the lines published. A room that fails is read again from its rows at the next
        tick, and the others go on (the first failure is raised at the end, for the log)."""
        now = time.time() if now is None else now
        with self.database.reading() as connection:
            product_ids = [room.product_id for room in rows.rooms_to_keep(connection)]
        for gone in set(self._kept) - set(product_ids):
            del self._kept[gone]  # (its mode changed, or the shop was seeded again)
        published, failed = [], []
        for product_id in product_ids:
            try:
                published.append(self._keep(product_id, now))
                if product_id in self._kept and self._kept[product_id].owed:
                    published.append(self._keep(product_id, now))  # (the release's numbers, then its tick)
            except Exception as error:
                self._kept.pop(product_id, None)
                failed.append(error)
        published = [line for line in published if line is not None]
        if failed:
            raise failed[0]
        return published

    def _keep(self, product_id: int, now: float) -> WaitingLine | None:
        with self.database.transaction() as unit:
            connection = unit.connection
            room = rows.room(connection, product_id, lock=True, with_record=False)
            if room is None:
                return None  # (no longer a queue)
            kept = self._kept_room(connection, product_id, room)
            waiting, owed = kept.room, kept.owed
            if owed:  # the release's numbers, its line out (`_Kept.owed`)
                rows.numbered(connection, product_id, owed)
                kept.owed = {}
            opened = self._take_in(connection, product_id, kept, room, now)
            pairs_left = rows.pairs_left(connection, product_id)
            waiting.pace_per_minute = (room.pace_per_minute if room.pace_per_minute is not None
                                       else default_pace(pairs_left, self.settings.queue_admissions_per_minute))
            let_in: list[str] = []
            if not opened:  # (at the release, nobody is let in before the shuffle's numbers are written)
                for account in rows.bought_among(connection, product_id, waiting.admitted()):
                    waiting.bought(account)
                let_in, ended = waiting.tick(now, pairs_left)
                rows.admitted(connection, product_id, {account: waiting.until(account) for account in let_in})
                for account in set(ended) - rows.expired(connection, product_id, ended):
                    waiting.bought(account)  # (its purchase came just before its window's end)
            line = waiting.line(product_id, room.version)
            # (the release's numbers written: a new version of the line, at which a replica reads
            # again a tab whose place it read before them, in the pre-queue of an opened line)
            if kept.sent is None or owed or _moved(kept.sent, line):
                line = replace(line, version=rows.moved(connection, product_id))
            elif now - kept.sent_at < SEND_AGAIN_S:
                return None
            kept.sent, kept.sent_at = line, now
            unit.publish([line])
        if let_in:
            log.info("product %s: let in %d (%d waiting, %d pairs left)", product_id, len(let_in), line.waiting,
                     pairs_left)
        return line

    def _take_in(self, connection, product_id: int, kept: _Kept, room: rows.Room, now: float) -> bool:
        """The places to take in, written with their numbers: those joined lately (a window, for a
        join that commits late), and every one still to take in, now and then and as a scheduled
        release comes near; at the release, every one joined since that read, or all of them when
        the pre-queue counted in the rows says one is missing (nobody left out of its shuffle).
        True at the release: the shuffle's record is written, its numbers are owed (`_Kept.owed`)."""
        waiting, released = kept.room, room.released
        opening = released and waiting.opened_at is None
        approaching = (waiting.opened_at is None and room.release_at is not None
                       and now >= room.release_at - READ_AHEAD_S > kept.read_at)
        settled = datetime.now(timezone.utc) - timedelta(seconds=JOINS_SETTLE_S)
        if now - kept.read_at >= FULL_READ_EVERY_S or approaching:
            kept.read_at, kept.read_since, since = now, settled, None
        else:  # (at the release: every join that may have committed since the last full read)
            since = kept.read_since if opening else settled
        to_take = rows.places_to_take(connection, product_id, since)
        if waiting.opened_at is None:
            _join_pre_queue(waiting, to_take)
            if opening and since is not None and \
                    rows.pre_queue_count(connection, product_id) != waiting.pre_queue_size():
                # One is missing (a join stamped by a clock far behind the keeper's, or slow to
                # commit): every place, as without the read ahead. (A count needs no clock.)
                to_take = rows.places_to_take(connection, product_id, None)
                _join_pre_queue(waiting, to_take)
            if released:  # the release: the pre-queue shuffled into the line
                rows.opened(connection, product_id, waiting.open(now), now)
                kept.owed = {account: waiting.number(account) for account in waiting.waiting()}
        if waiting.opened_at is not None:  # those who came after, behind, in the order they came
            numbers: dict[str, int] = {}
            for place in to_take:
                if place.number is None and (place.stage is Stage.QUEUE or waiting.number(place.account) is None):
                    waiting.join(place.account, place.entry)
                    numbers[place.account] = waiting.number(place.account)
            rows.numbered(connection, product_id, numbers)
        return opening

    def _kept_room(self, connection, product_id: int, room) -> _Kept:
        """The room as this keeper holds it, read again from its rows when it was reseeded, or moved
        on by another keeper (one left over from a lost node) or by a lock that took a place out."""
        kept = self._kept.get(product_id)
        same_room = kept is not None and kept.commitment == room.commitment and \
            (kept.room.opened_at is None) == (room.opened_at is None)
        if same_room and (kept.sent is None or kept.sent.version == room.version):
            return kept
        fresh = self._kept[product_id] = self._restore(connection, product_id)
        if same_room:
            fresh.room.go_on_pacing_from(kept.room)
        return fresh

    def _restore(self, connection, product_id: int) -> _Kept:
        """The room as its rows keep it. A place the release shuffled keeps the number the
        shuffle's record gives it, written at the next tick when it was not yet (its keeper stopped
        between the release and the write). The places not taken in yet (in line with no number)
        are taken in at the next tick, which reads every place still to take in."""
        room = rows.room(connection, product_id)
        places, owed = rows.places(connection, product_id), {}
        if room.opened_at is not None and room.record is not None and \
                any(place.number is None and place.stage in (Stage.PRE_QUEUE, Stage.REMOVED) for place in places):
            shuffled = numbers_at_the_opening(room.record)
            places = [_numbered_by_the_shuffle(place, shuffled, owed) for place in places]
        places = [place for place in places
                  if not (room.opened_at is not None and place.number is None
                          and place.stage in (Stage.PRE_QUEUE, Stage.QUEUE))]
        waiting = WaitingRoom.restore(room.seed, room.pace_per_minute or 0.0, self.settings.queue_turn_minutes * 60.0,
                                      self.settings.max_pairs_per_product, places, room.record, room.opened_at)
        return _Kept(waiting, room.commitment, owed=owed)


def _numbered_by_the_shuffle(place: LinePlace, shuffled: dict[str, int], owed: dict[str, int]) -> LinePlace:
    """A place as the release left it: in line at its number in the shuffle (owed: to write), or
    taken out of the line since (a lock) at that number; any other as its row says."""
    number = shuffled.get(place.entry) if place.number is None else None
    if number is None or place.stage not in (Stage.PRE_QUEUE, Stage.REMOVED):
        return place
    if place.stage is Stage.PRE_QUEUE:
        owed[place.account] = number
        return replace(place, stage=Stage.QUEUE, number=number)
    return replace(place, number=number)


def _join_pre_queue(waiting: WaitingRoom, places: list[LinePlace]) -> None:
    for place in places:
        if place.stage is Stage.PRE_QUEUE:
            waiting.join(place.account, place.entry)  # (one held already keeps its entry)


def _moved(before: WaitingLine, after: WaitingLine) -> bool:
    """Whether a tab, or the staff's dashboard, would show something else (the version aside)."""
    return replace(before, version=after.version) != after
