"""A draw (drop mode `draw`), as rules: who may enter, and whom each size's pairs go to.

- Entries: one per account, with one size of the product, while the product is unreleased: its
  release (now, or at its scheduled time) is the draw's close.
- At the close every entry is shuffled (domain/fairness.py: the record anyone can check), the
  entries of locked accounts taken out with why. Each size's pairs go to that size's entries in the
  drawn order: a winner's pair is bought for them, and a winner whose purchase fails passes the pair
  on to the next drawn of that size. When a size has no pair left to give, its other entries lost.

Pure: the caller gives the catalog's facts and the order; nothing here reads a clock, the stock or
the database (tests/domain/test_draws.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sneakers23.domain.accounts import Letter
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import ShuffleRecord
from sneakers23.domain.words import counted


class Outcome(StrEnum):
    ENTERED = "entered"  # waiting for the close, or drawn behind the pairs given so far
    WON = "won"  # drawn for a pair: its purchase is under way
    BOUGHT = "bought"  # its pair is in the winner's orders
    FAILED = "failed"  # drawn, but its purchase was refused (a locked account): the pair went on
    LOST = "lost"  # the close gave every pair of its size to others
    REMOVED = "removed"  # taken out before the shuffle (a locked account), with why in the record


OUTCOMES = tuple(Outcome)


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str  # opaque: what the published record names it by
    shopper_id: str
    item_id: int
    outcome: Outcome
    note: str = ""  # why it failed, or was removed


@dataclass(frozen=True, slots=True)
class DrawState:
    """What is published of a draw: its commitment from the start, its record after the close."""

    product_id: int
    commitment: str
    record: ShuffleRecord | None
    closed_at: datetime | None
    finished_at: datetime | None  # every pair given, every entrant told


def draw_view(state: DrawState, entry: Entry | None, sizes: Mapping[int, str]) -> dict:
    """A draw as its JSON tells a shopper (`entry`: theirs) and anyone who checks it."""
    return {
        "product_id": state.product_id,
        "commitment": state.commitment,
        "closed": state.closed_at is not None,
        "finished": state.finished_at is not None,
        "record": None if state.record is None else state.record.as_dict(),
        "entry": None if entry is None else {"entry_id": entry.entry_id, "item_id": entry.item_id,
                                             "size": sizes.get(entry.item_id), "outcome": str(entry.outcome),
                                             "note": entry.note},
    }


def staff_figures(stages: Mapping[int, tuple[bool, bool, bool, bool]], counts: Sequence[tuple[int, int, str, int]],
                  untold: Mapping[int, int]) -> dict[int, dict]:
    """Each draw as the staff's dashboard shows it: entries per size, how many of each outcome, and
    where its close is, in words. `stages`: each draw's product and (released, closed, finished,
    told); `counts`: (product, size, outcome, entries); `untold`: entrants not written to yet."""
    figures = {product_id: {"entries": 0, "per_size": {}, "outcomes": {str(o): 0 for o in OUTCOMES}}
               for product_id in stages}
    for product_id, item_id, outcome, entries in counts:
        if product_id in figures:
            shown = figures[product_id]
            shown["entries"] += entries
            shown["per_size"][item_id] = shown["per_size"].get(item_id, 0) + entries
            shown["outcomes"][outcome] = shown["outcomes"].get(outcome, 0) + entries
    for product_id, (released, closed, finished, told) in stages.items():
        shown = figures[product_id]
        tally, entered = shown["outcomes"], counted(shown["entries"], "entry", "entries")
        if finished:
            letters = "every entrant told" if told else f"{counted(untold.get(product_id, 0), 'entrant')} still to be told"
            shown["text"] = (f"draw finished: {entered}; {counted(tally[Outcome.BOUGHT], 'pair')} bought for winners, "
                             f"{tally[Outcome.FAILED]} failed, {tally[Outcome.LOST]} lost, "
                             f"{tally[Outcome.REMOVED]} removed; {letters}")
        elif closed:
            shown["text"] = (f"draw closed, giving its pairs: {entered}; {counted(tally[Outcome.BOUGHT], 'pair')} "
                             f"bought so far, {tally[Outcome.WON]} being bought")
        elif released:
            shown["text"] = f"draw closing: {entered}, no more taken; the shuffle comes within seconds"
        else:
            shown["text"] = f"draw open: {entered} so far (it closes at the release)"
        shown["stage"] = ("finished" if finished else "closed" if closed else "closing" if released else "open")
        shown["told"] = told
    return figures


class EntryRefusal(StrEnum):
    NO_SUCH_SIZE = "no_such_size"
    NOT_A_DRAW = "not_a_draw"
    CLOSED = "closed"
    SIGN_IN_REQUIRED = "sign_in_required"
    PROOF_USED = "proof_used"  # its proof of work made another entry already


def entry_refused(product_id: int, mode: DropMode, released: bool, item_product_id: int | None,
                  signed_in: bool, proof_used: bool = False) -> EntryRefusal | None:
    """Why an entry for a size (a product's item, `item_product_id` None when there is no such
    item) is refused, if it is (`proof_used`: the proof of work it came with made an entry before)."""
    if item_product_id is None or item_product_id != product_id:
        return EntryRefusal.NO_SUCH_SIZE
    if mode is not DropMode.DRAW:
        return EntryRefusal.NOT_A_DRAW
    if released:
        return EntryRefusal.CLOSED
    if not signed_in:
        return EntryRefusal.SIGN_IN_REQUIRED
    if proof_used:
        return EntryRefusal.PROOF_USED
    return None


def entry_refusal_message(refusal: EntryRefusal, product_id: int) -> str:
    return {
        EntryRefusal.NO_SUCH_SIZE: f"product {product_id} has no such size",
        EntryRefusal.NOT_A_DRAW: f"product {product_id} is not sold by draw",
        EntryRefusal.CLOSED: f"the draw for product {product_id} has closed",
        EntryRefusal.SIGN_IN_REQUIRED: "sign in (with a confirmed email address) to enter a draw",
        EntryRefusal.PROOF_USED: "this check that you are a person was used already: reload the page and try again",
    }[refusal]


# When a draw ends, each entrant's page reads its outcome once, at a random moment within a spread
# that keeps the reads near OUTCOME_READS_PER_S (100,000 entrants: over 10 s), and never longer
# than MAX_READS_SPREAD_S (a shopper waits for news at most that long past the end).
OUTCOME_READS_PER_S = 10_000
MAX_READS_SPREAD_S = 10.0


def outcome_reads_spread_s(entries: int) -> float:
    return min(MAX_READS_SPREAD_S, max(0, entries) / OUTCOME_READS_PER_S)


# A winner's pair is bought with a purchase key of its entry's: only that purchase may buy it (a
# winner buying under another key is refused), and a draw that starts again never buys it twice.
DRAW_KEY_PREFIX = "draw-"


def draw_key(entry_id: str) -> str:
    return f"{DRAW_KEY_PREFIX}{entry_id}"


def entry_of_key(key: str | None) -> str | None:
    """The entry a purchase key buys a winner's pair for; None for any other key."""
    if key is None or not key.startswith(DRAW_KEY_PREFIX):
        return None
    return key[len(DRAW_KEY_PREFIX):] or None


def drawn_by_size(order: Sequence[str], size_of: Mapping[str, int]) -> dict[int, list[str]]:
    """Each size's entries, in the drawn order."""
    by_size: dict[int, list[str]] = {}
    for entry in order:
        by_size.setdefault(size_of[entry], []).append(entry)
    return by_size


def next_winners(by_size: Mapping[int, Sequence[str]], pairs: Mapping[int, int],
                 outcomes: Mapping[str, Outcome]) -> list[str]:
    """The entries to buy a pair for now: per size, the first undecided entries in the drawn order,
    as many as its pairs (the stock, less the winners being bought). Empty when the draw is done."""
    chosen: list[str] = []
    for item_id, entries in sorted(by_size.items()):
        free = pairs.get(item_id, 0) - sum(outcomes[entry] is Outcome.WON for entry in entries)
        for entry in entries:
            if free <= 0:
                break
            if outcomes[entry] is Outcome.ENTERED:
                chosen.append(entry)
                free -= 1
    return chosen


def mode_change_refused(product_id: int, mode: DropMode, new_mode: DropMode, entries: int) -> str | None:
    """Why a draw or a queue may not become another mode, if it may not: shoppers entered it, or
    took places in it (`entries`)."""
    if mode is DropMode.DRAW and new_mode is not DropMode.DRAW and entries:
        return (f"product {product_id}'s draw has {entries} entr{'y' if entries == 1 else 'ies'}: "
                "it stays a draw")
    if mode is DropMode.QUEUE and new_mode is not DropMode.QUEUE and entries:
        return f"product {product_id}'s queue has {entries} shopper{'' if entries == 1 else 's'} in it: it stays a queue"
    return None


def result_letter(address: str, product_name: str, size: str, outcome: Outcome, note: str, store: str,
                  record: str) -> Letter | None:
    """What an entrant is told once the draw has given every pair; None for an undecided entry."""
    told = {
        Outcome.BOUGHT: (f"You won the draw: {product_name}",
                         f"You won the Sneakers23 draw for the {product_name}, size {size}. Your pair is "
                         "bought for you: it is in your orders."),
        Outcome.LOST: (f"The draw is closed: {product_name}",
                       f"The Sneakers23 draw for the {product_name} is closed. Your entry (size {size}) was "
                       "not drawn for a pair this time."),
        Outcome.FAILED: (f"The draw is closed: {product_name}",
                         f"The Sneakers23 draw for the {product_name} is closed. Your entry (size {size}) was "
                         f"drawn, but its pair could not be bought for you ({note}), so it went to the next "
                         "entry drawn."),
        Outcome.REMOVED: (f"The draw is closed: {product_name}",
                          f"The Sneakers23 draw for the {product_name} is closed. Your entry (size {size}) was "
                          f"taken out before the shuffle ({note})."),
    }.get(outcome)
    if told is None:
        return None
    subject, text = told
    return Letter(address, subject, f"{text}\n\nThe store: {store}\n\nThe draw's record, which anyone can check "
                                    f"(`sneakers23 drop verify`, or docs/fairness.md's steps): {record}\n")
