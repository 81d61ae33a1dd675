"""Draws (drop mode `draw`): entries while the product is unreleased; at its release, the close,
which shuffles the entries (the record anyone can check) and buys each size's pairs for that size's
entries in the drawn order, through the drop engine's group commit (db/sales.py), then tells
every entrant by email.

Every step is kept in the database before the next (the record, each winner, each outcome), so a
draw that stops half way (the release clock restarted, the database away) goes on where it was:
the order is the record's, and a winner's purchase has a key of its own (`draw-ENTRY`), so it is
never bought twice.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from dataclasses import dataclass, replace

from sneakers23.db import admin
from sneakers23.db import draws as rows
from sneakers23.db import queries
from sneakers23.db.accounts import accounts as account_rows
from sneakers23.db.sales import sell_claims
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.accounts import Delivery, Letter, account_of_shopper
from sneakers23.domain.admin import ActionKind
from sneakers23.domain.changes import DrawFinished
from sneakers23.domain.draws import (DrawState, Entry, EntryRefusal, Outcome, draw_key, draw_view, drawn_by_size,
                                     entry_refusal_message, entry_refused, next_winners, result_letter,
                                     staff_figures)
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import Removed, ShuffleRecord, draw, verify
from sneakers23.domain.purchases import signed_in
from sneakers23.domain.sales import Claim
from sneakers23.domain.words import counted
from sneakers23.errors import DrawProofUsed, DrawRefused, DrawSignInRequired, NotFound
from sneakers23.inventory.ports import Mail
from sneakers23.settings import Settings

log = logging.getLogger(__name__)

ENTRY_ID_BYTES = 8  # 16 hex digits: opaque, and too many to guess another's
WINNERS_AT_ONCE = 2_000  # a round's purchases in group commits of at most this many (each winner's guard takes 3 parameters)
LETTERS_A_ROUND = 2_000  # letters posted in one round at most (and never more than the postbox has room for)
LETTER_POSTINGS = 3  # a letter the postbox gave up on (its own 5 tries each) is posted this many times in all
ENTRY_ERRORS = {EntryRefusal.SIGN_IN_REQUIRED: DrawSignInRequired, EntryRefusal.PROOF_USED: DrawProofUsed}
DRAWN_BY = "release-clock"  # who the audit says closed and gave a draw


@dataclass(frozen=True, slots=True)
class DrawReport:
    product_id: int
    entries: int
    removed: int
    bought: int
    failed: int
    lost: int


class Draws:
    def __init__(self, database: Database, settings: Settings, mail: Mail | None = None,
                 public_url: str | None = None):
        self.database = database
        self.settings = settings
        self.mail = mail
        self.public_url = (public_url or "").rstrip("/")
        # Letters posted and not known done (not posted again meanwhile), and those the postbox
        # says are done (sent, or refused too often), by draw, still to be marked told (the
        # postbox's thread adds to it).
        self._receipts_lock = threading.Lock()
        self._posted: set[str] = set()
        self._sent: dict[int, list[str]] = {}
        self._failures: dict[str, int] = {}  # how often an entry's letter was refused for good, while it is posted again
        self._told_figures: dict[tuple[int, str], dict] = {}  # by (product, commitment): a told draw's, final

    # --- entries ---

    def enter_draw(self, shopper_id: str, product_id: int, item_id: int, proof: str | None = None) -> Entry:
        """The shopper's entry in the product's draw, with this size: made now, or the one it has
        (one per account, whatever the size asked for now). `proof`: the challenge of the proof of
        work the entry came with (serve/proof_of_work.py), taken once across the store. Raises
        DrawRefused with why."""
        with self.database.reading() as connection:  # (refused at a read: a guest's, a closed draw's, costs no write)
            facts = rows.entry_facts(connection, product_id, item_id)
            held = None if facts is None else rows.entry_of(connection, product_id, shopper_id)
            if held is not None:
                return held
            if facts is not None:
                refused = entry_refused(product_id, *facts, signed_in(shopper_id), rows.proof_used(connection, proof))
                if refused is not None:
                    raise ENTRY_ERRORS.get(refused, DrawRefused)(entry_refusal_message(refused, product_id))
        for _attempt in range(3):  # (an entry id taken already: another is drawn)
            with self.database.transaction() as unit:  # (the rule again, on the facts under the write)
                facts = rows.entry_facts(unit.connection, product_id, item_id)
                if facts is None:
                    raise NotFound(f"there is no product {product_id}")
                held = rows.entry_of(unit.connection, product_id, shopper_id)
                if held is not None:
                    return held
                refused = entry_refused(product_id, *facts, signed_in(shopper_id), rows.proof_used(unit.connection, proof))
                if refused is not None:
                    raise ENTRY_ERRORS.get(refused, DrawRefused)(entry_refusal_message(refused, product_id))
                if rows.enter(unit.connection, product_id, shopper_id, item_id, secrets.token_hex(ENTRY_ID_BYTES), proof):
                    return rows.entry_of(unit.connection, product_id, shopper_id)
            with self.database.reading() as connection:  # (a second tab's entry, or the close, came first)
                held = rows.entry_of(connection, product_id, shopper_id)
                if held is not None:
                    return held
                if not _open_for_entries(connection, product_id):
                    raise DrawRefused(entry_refusal_message(EntryRefusal.CLOSED, product_id))
        raise DrawRefused("the entry could not be made: try again")

    async def enter_draw_async(self, shopper_id: str, product_id: int, item_id: int, proof: str | None = None) -> Entry:
        return await self.database.in_thread(self.enter_draw, shopper_id, product_id, item_id, proof)

    def draw_for_shopper(self, product_id: int, shopper_id: str | None, with_record: bool = True) -> dict:
        """The draw's JSON view: its commitment, its record once closed (unless left out: a page
        asks for its shopper's entry alone, not every entry), and the shopper's entry. Raises
        NotFound for a product with no draw."""
        with self.database.reading() as connection:
            state = rows.state(connection, product_id)
            if state is None:
                raise NotFound(f"product {product_id} is not sold by draw")
            entry = None if shopper_id is None else rows.entry_of(connection, product_id, shopper_id)
            sizes = rows.sizes(connection, product_id)
        return draw_view(state if with_record else replace(state, record=None), entry, sizes)

    async def draw_for_shopper_async(self, product_id: int, shopper_id: str | None, with_record: bool = True) -> dict:
        return await self.database.in_thread(self.draw_for_shopper, product_id, shopper_id, with_record)

    def draw_entry(self, shopper_id: str, product_id: int) -> Entry | None:
        with self.database.reading() as connection:
            return rows.entry_of(connection, product_id, shopper_id)

    def draw_state(self, product_id: int) -> DrawState | None:
        """The draw's commitment, and its record once closed (None: the product has no draw)."""
        with self.database.reading() as connection:
            return rows.state(connection, product_id)

    def draw_entries_per_size(self, product_id: int) -> dict[int, int]:
        with self.database.reading() as connection:
            return rows.entries_per_size(connection, product_id)

    def draw_figures(self) -> dict[int, dict]:
        """Every draw as the staff's dashboard shows it (domain/draws.py: staff_figures). A draw
        whose entrants are all told changes no more: counted once, then kept."""
        kept = dict(self._told_figures)  # (one assignment below: a late read beside the next is harmless)
        with self.database.reading() as connection:
            stages, commitments, counts, untold = rows.staff_figures(connection, set(kept))
        draw_of = {product_id: (product_id, commitment) for product_id, commitment in commitments.items()}
        figures = staff_figures({p: stage for p, stage in stages.items() if draw_of[p] not in kept}, counts, untold)
        kept = {draw: shown for draw, shown in kept.items() if draw in draw_of.values()}
        kept.update({draw_of[p]: shown for p, shown in figures.items() if shown["told"]})
        self._told_figures = kept
        return {p: figures.get(p) or kept[draw_of[p]] for p in stages}

    async def draw_figures_async(self) -> dict[int, dict]:
        return await self.database.in_thread(self.draw_figures)

    def verify_draw(self, product_id: int) -> list[str]:
        """What does not hold in the draw's published record (empty: it checks); raises NotFound
        before the close."""
        state = self.draw_state(product_id)
        if state is None or state.record is None:
            raise NotFound(f"product {product_id} has no closed draw to check")
        return verify(state.record, state.commitment)

    # --- the close (the release clock calls it) ---

    def run_due_draws(self) -> list[DrawReport]:
        """Close and give every released draw not given yet, and write to the entrants of those
        given (a round of letters each); one that fails is logged and tried again at the next call
        (the others go on). Returns a report for each draw given by this call."""
        with self.database.reading() as connection:
            due = rows.to_run(connection)
        reports = []
        for product_id in due:
            try:
                with self.database.reading() as connection:
                    finished = rows.finished(connection, product_id)
                if finished:
                    self._tell(product_id)  # (a round of letters: nothing new to report)
                else:
                    reports.append(self.run_draw(product_id))
            except Exception as error:  # (the database away, a busy size: it goes on from where it was)
                log.warning("the draw for product %s stopped for now: %s", product_id, error)
        return reports

    def run_draw(self, product_id: int) -> DrawReport:
        """Close the released product's draw, if it is not closed, give every pair it can, then
        write to its entrants (as many as the postbox takes this round: the next rounds write to
        the rest). Each step is kept before the next, and guarded, so two runs at once or a run
        after a crash go on where the draw is without deciding anything twice."""
        with self.database.reading() as connection:
            finished = rows.finished(connection, product_id)
        if not finished:
            self._give(product_id)
        self._tell(product_id)
        with self.database.reading() as connection:
            tally = rows.outcome_counts(connection, product_id)
        report = DrawReport(product_id, sum(tally.values()), tally[Outcome.REMOVED], tally[Outcome.BOUGHT],
                            tally[Outcome.FAILED], tally[Outcome.LOST])
        log.info("the draw for product %s: %s", product_id, report)
        return report

    def _give(self, product_id: int) -> None:
        """The close, then rounds of winners bought until every pair is given (or nobody is left
        to give one to): the draw is finished."""
        record = self._close(product_id)
        by_size = None
        while True:
            with self.database.transaction() as unit:  # (one run at a time chooses winners, or finishes)
                rows.lock(unit.connection, product_id)
                entries = {entry.entry_id: entry for entry in rows.entries(unit.connection, product_id)}
                pending = [entry for entry in entries.values() if entry.outcome is Outcome.WON]
                if not pending:  # (winners a stopped run left still to buy come first)
                    if by_size is None:
                        by_size = drawn_by_size(record.order, {e: entries[e].item_id for e in record.order})
                    chosen = next_winners(by_size, rows.pairs_left(unit.connection, product_id),
                                          {entry_id: entry.outcome for entry_id, entry in entries.items()})
                    made = rows.set_outcomes(unit.connection, product_id, {e: (Outcome.WON, "") for e in chosen},
                                             Outcome.ENTERED)
                    pending = [entries[e] for e in made]
                if not pending:  # every pair given: finished here, under the lock (nobody is buying)
                    if rows.finish(unit.connection, product_id):
                        tally = rows.outcome_counts(unit.connection, product_id)
                        unit.publish([DrawFinished(product_id, sum(tally.values()))])  # (its pages read, once)
                        admin.record(unit.connection, DRAWN_BY, ActionKind.DRAW_FINISHED, f"product {product_id}",
                                     True, f"{counted(tally[Outcome.BOUGHT], 'pair')} bought for winners; "
                                           f"{tally[Outcome.FAILED]} failed, {tally[Outcome.LOST]} lost", "")
                    return
            for start in range(0, len(pending), WINNERS_AT_ONCE):
                self._buy(product_id, pending[start:start + WINNERS_AT_ONCE])

    def _close(self, product_id: int) -> ShuffleRecord:
        """The draw's record: made now (entries are fixed: none is made after the release), or
        the one kept."""
        with self.database.reading() as connection:
            seed, record = rows.seed_of(connection, product_id)
            if record is not None:
                return record
            entries = rows.entries(connection, product_id)
            locked = rows.locked_shoppers(connection, {entry.shopper_id for entry in entries})
        removed = [Removed(entry.entry_id, "account locked") for entry in entries if entry.shopper_id in locked]
        made = draw(seed, [entry.entry_id for entry in entries], removed)  # (outside the write: a big draw takes a while)
        with self.database.transaction() as unit:
            record = rows.close(unit.connection, product_id, made)
            if record is made:
                admin.record(unit.connection, DRAWN_BY, ActionKind.DRAW_CLOSED, f"product {product_id}", True,
                             f"{counted(len(made.entries), 'entry', 'entries')}, {len(removed)} removed; seed "
                             f"{made.seed}, public value {made.public_value}", "")
        return record

    def _buy(self, product_id: int, winners: list[Entry]) -> None:
        """Each winner's pair, bought for them in one group commit under its entry's key. A winner
        whose purchase is refused (a locked account, a pair gone) failed, and the next round gives
        the pair on; any other error stops the run with the winner still to buy (the next run
        buys it)."""
        with self.database.reading() as connection:
            locked = rows.locked_shoppers(connection, {entry.shopper_id for entry in winners})
        decided = {entry.entry_id: (Outcome.FAILED, "account locked") for entry in winners if entry.shopper_id in locked}
        buying = [entry for entry in winners if entry.entry_id not in decided]
        stopped: Exception | None = None
        if buying:
            claims = [Claim(entry.shopper_id, (entry.item_id,), draw_key(entry.entry_id), True) for entry in buying]
            with self.database.errors():
                committed = sell_claims(self.database.engine, self.settings.database_url, product_id, claims,
                                        self.settings.max_pairs_per_product)
            self.database.published(committed.changes)
            for entry, outcome in zip(buying, committed.outcomes):
                if isinstance(outcome, Exception):
                    stopped = stopped or outcome
                elif not outcome.ok:
                    decided[entry.entry_id] = (Outcome.FAILED, outcome.message[:200])
                else:  # (the sale marked it so already: said again, so no winner is bought for twice)
                    decided[entry.entry_id] = (Outcome.BOUGHT, "")
        if decided:
            with self.database.transaction() as unit:
                rows.set_outcomes(unit.connection, product_id, decided, Outcome.WON)
        if stopped is not None:
            raise stopped

    def _tell(self, product_id: int) -> None:
        """Letters to the finished draw's entrants, as many as the postbox has room for this round
        (the next rounds write to the rest). An entry is marked told once the postbox says its
        letter was sent, or refused for good LETTER_POSTINGS times (logged), or when its account is
        gone; a letter lost with the process (posted, not sent), or whose server was away, is
        posted again by a later round. So every letter that can be sent is sent, at least once; a
        crash, or the database away at a receipt, may write to some twice. (One release clock
        tells: a second process telling at once could too.)"""
        if self._write_receipts(product_id):
            return
        if self.mail is None:  # (no postbox: nobody to write to; told now)
            with self.database.transaction() as unit:
                rows.mark_told(unit.connection, product_id, None)
            return
        room = min(LETTERS_A_ROUND, self.mail.room())
        with self._receipts_lock:
            posted = set(self._posted)
        with self.database.reading() as connection:
            waiting = rows.untold(connection, product_id, room + len(posted))
            untold = [entry for entry in waiting if entry.entry_id not in posted][:room]
            letters = self._letters(connection, product_id, untold) if untold else {}
        gone = [entry.entry_id for entry in untold if entry.entry_id not in letters]  # (an account gone: no letter)
        if gone or not waiting:  # (or nobody left to tell, nobody entered: the draw told)
            with self._receipts_lock:
                for entry_id in gone:
                    self._failures.pop(entry_id, None)
            with self.database.transaction() as unit:
                rows.mark_told(unit.connection, product_id, gone)
        for entry_id, letter in letters.items():
            with self._receipts_lock:
                self._posted.add(entry_id)
            if not self.mail.post(letter, functools.partial(self._letter_done, product_id, entry_id)):
                with self._receipts_lock:
                    self._posted.discard(entry_id)  # (no room after all: a later round)
        if letters:
            self._write_receipts(product_id)  # (a postbox that sent some at once)

    def _letter_done(self, product_id: int, entry_id: str, delivery: Delivery) -> None:
        """The postbox's receipt (on its thread), noted and written by the next round: a letter sent
        is told; one refused for good is posted again, LETTER_POSTINGS times in all (by this
        process), then given up (logged) and told; one whose server was away is posted again by a
        later round, for as long as it takes (the draw stays untold meanwhile: the dashboard says
        how many)."""
        with self._receipts_lock:
            refusals = self._failures.get(entry_id, 0) + (delivery is Delivery.REFUSED)
            if delivery is Delivery.SENT or refusals >= LETTER_POSTINGS:
                self._failures.pop(entry_id, None)
                self._sent.setdefault(product_id, []).append(entry_id)
            else:
                self._failures[entry_id] = refusals
                self._posted.discard(entry_id)  # (posted again by a later round)
        if delivery is Delivery.REFUSED and refusals >= LETTER_POSTINGS:
            log.warning("the letter to entry %s of the draw for product %s was refused %d times: given up",
                        entry_id, product_id, refusals)

    def _write_receipts(self, product_id: int) -> bool:
        """The letters of the draw done since the last time, marked told; True once every entrant
        of the draw is told. The receipts are kept for the next round when the write fails."""
        with self._receipts_lock:
            done = self._sent.pop(product_id, [])
        if not done:
            with self.database.reading() as connection:
                return rows.told(connection, product_id)
        try:
            with self.database.transaction() as unit:
                told = rows.mark_told(unit.connection, product_id, done)
        except Exception:
            with self._receipts_lock:
                self._sent.setdefault(product_id, []).extend(done)
            raise
        with self._receipts_lock:
            self._posted.difference_update(done)
        return told

    def _letters(self, connection, product_id: int, entries: list[Entry]) -> dict[str, Letter]:
        """Each entry's letter, by entry (none for an entry whose account is gone)."""
        product = next(p for p in queries.load_products(connection) if p.id == product_id)
        by_id = account_rows(connection, {account_of_shopper(entry.shopper_id) or 0 for entry in entries})
        sizes = {item.id: item.size for item in product.items}
        store, record = f"{self.public_url}/", f"{self.public_url}/api/products/{product_id}/draw"
        letters = {}
        for entry in entries:
            account = by_id.get(account_of_shopper(entry.shopper_id) or 0)
            letter = None if account is None else result_letter(
                account.email, f"{product.brand} {product.name}", sizes.get(entry.item_id, "?"), entry.outcome,
                entry.note, store, record)
            if letter is not None:
                letters[entry.entry_id] = letter
        return letters


def _open_for_entries(connection, product_id: int) -> bool:
    facts = rows.entry_facts(connection, product_id, 0)
    return facts is not None and facts[0] is DropMode.DRAW and not facts[1]
