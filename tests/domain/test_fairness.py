"""The checkable shuffle: its published record recomputes, any change to it is caught, and the
order it gives does not depend on where an entry started (a two-sample Kolmogorov-Smirnov test)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats

from sneakers23.domain.fairness import (Removed, ShuffleRecord, _below, _words, commitment, draw, public_value, shuffle_key,
                                        shuffled, verify)

SEED = bytes(range(32))


def seed_of(run: int) -> bytes:
    return hashlib.sha256(f"run {run}".encode()).digest()


def checker_from_the_text(seed: bytes, entries: list[str], removed: frozenset[str] = frozenset()) -> list[str]:
    """docs/fairness.md's steps, written again from the text alone (as an outside checker would)."""
    ids = sorted(entries, key=str.encode)
    public = hashlib.sha256("".join(i + "\n" for i in ids).encode()).digest()
    key = hashlib.sha256(seed + public).digest()
    words = (int.from_bytes(hmac.new(key, c.to_bytes(8, "big"), "sha256").digest()[o:o + 8], "big")
             for c in itertools.count() for o in (0, 8, 16, 24))

    def below(b: int) -> int:
        return next(w % b for w in words if w < 2 ** 64 - 2 ** 64 % b)

    for i in range(len(ids) - 1, 0, -1):
        j = below(i + 1)
        ids[i], ids[j] = ids[j], ids[i]
    return [i for i in ids if i not in removed]


def test_the_worked_example_of_docs_fairness_md_and_a_checker_written_from_its_text():
    entries = ["e1", "e2", "e3", "e4", "e5"]
    record = draw(SEED, entries)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "fairness.md").read_text()
    assert record.commitment in docs and record.public_value in docs
    key = shuffle_key(SEED, record.public_value)
    assert key.hex() in docs
    assert hmac.new(key, bytes(8), "sha256").hexdigest() in docs  # the first block
    words = _words(key)
    drawn = [_below(words, i + 1) for i in range(4, 0, -1)]
    assert f"| the `j` drawn for i = 4, 3, 2, 1 | {', '.join(map(str, drawn))} |" in docs
    assert f"| order | {', '.join(record.order)} |" in docs
    assert list(record.order) == checker_from_the_text(SEED, entries)
    for run in range(50):  # and on lists long enough to need many blocks, some with entries removed
        entries = [f"shopper-{run}-{n}" for n in range(run * 7)]
        removed = frozenset(entries[::5][: run % 4])
        record = draw(seed_of(run), entries, removed=[Removed(e, "account locked") for e in sorted(removed)])
        assert list(record.order) == checker_from_the_text(seed_of(run), entries, removed)


def test_a_published_record_verifies_and_any_change_is_caught():
    entries = [f"entry-{n:03d}" for n in range(40)]
    record = draw(SEED, entries, removed=[Removed("entry-007", "account locked")])
    assert "entry-007" in record.entries and "entry-007" not in record.order and len(record.order) == 39
    assert verify(record) == []
    assert verify(record, published_commitment=commitment(SEED)) == []
    # Round trip through JSON-like data, as `sneakers23 drop verify` reads it.
    assert verify(ShuffleRecord.from_dict(record.as_dict())) == []

    swapped = list(record.order)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert verify(replace(record, order=tuple(swapped))) == [
        "the order is not the shuffle of the entries with this seed, less the removed"]
    changed = tuple("entry-999" if e == "entry-003" else e for e in record.entries)
    assert "the entries' SHA-256 is not the public value" in verify(replace(record, entries=changed))
    other_seed = seed_of(1)
    assert "the seed's SHA-256 is not the commitment" in verify(replace(record, seed=other_seed.hex()))
    assert verify(record, published_commitment=commitment(other_seed)) == [
        "the commitment is not the one published before the shuffle"]
    # A seed chosen after seeing the entries cannot keep the commitment: the store cannot grind.
    reseeded = draw(other_seed, record.entries)
    assert verify(reseeded, published_commitment=record.commitment) == [
        "the commitment is not the one published before the shuffle"]
    # A removal the entries do not hold is caught; so is a public value that is not one.
    stray = replace(record, removed=(*record.removed, Removed("entry-zzz", "bot")))
    assert verify(stray) == ["1 removed entries are not among the entries"]
    assert "the public value is not 64 hexadecimal digits" in verify(replace(record, public_value="xyz"))
    assert verify(replace(record, seed="zz")) == ["the seed is not hexadecimal"]
    assert verify(replace(record, seed=SEED[:8].hex())) == ["the seed has 8 bytes, not at least 32"]


def test_a_removal_takes_one_entry_out_and_moves_nobody_else():
    """Which entries the store removes is no lever on the others' order: every entry is shuffled,
    and the removed are taken out after."""
    entries = [f"e{n}" for n in range(30)]
    everyone = draw(SEED, entries).order
    for removed in (["e3"], ["e3", "e17", "e29"]):
        record = draw(SEED, entries, removed=[Removed(e, "account locked") for e in removed])
        assert record.order == tuple(e for e in everyone if e not in removed)
    with pytest.raises(ValueError, match="not among the entries"):
        draw(SEED, entries, removed=[Removed("stranger", "bot")])


def test_a_word_past_the_last_whole_multiple_is_thrown_away():
    """2^64 mod 3 = 1: the word 2^64 - 1 would make 0 likelier than 1 and 2, so the next is taken."""
    assert _below(iter([2 ** 64 - 1, 5]), 3) == 2
    assert _below(iter([2 ** 64 - 2, 5]), 3) == (2 ** 64 - 2) % 3


def test_bad_input_is_refused_in_words():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        commitment(b"short")
    with pytest.raises(ValueError, match="twice"):
        public_value(["a", "a"])
    with pytest.raises(ValueError, match="line feed"):
        public_value(["a\nb"])
    with pytest.raises(ValueError, match="missing or malformed"):
        ShuffleRecord.from_dict({"seed": "00"})
    assert draw(SEED, []).order == () and verify(draw(SEED, [])) == []
    assert draw(SEED, ["only"]).order == ("only",)


def test_the_order_depends_on_the_entries_not_on_the_order_they_came_in():
    entries = [f"e{n}" for n in range(10)]
    assert draw(SEED, entries) == draw(SEED, list(reversed(entries)))
    # One more entry, a new public value: a new key, a different order.
    assert shuffle_key(SEED, public_value(entries)) != shuffle_key(SEED, public_value([*entries, "e10"]))


def test_every_order_of_three_is_as_likely():
    """A chi-square over 6,000 shuffles (keys from run numbers): no permutation favoured."""
    counts = Counter(tuple(shuffled(["a", "b", "c"], seed_of(run))) for run in range(6_000))
    assert set(counts) == set(itertools.permutations("abc"))
    assert stats.chisquare(list(counts.values())).pvalue > 0.001, counts


def test_positions_do_not_depend_on_arrival_5000_early_and_5000_late_over_20_runs():
    """The pre-queue's fairness figure: ids that sort the early arrivals first (the worst case for a
    shuffle that started from the canonical order), and after each run's shuffle the early ones'
    places and the late ones' come from one distribution (two-sample Kolmogorov-Smirnov, p > 0.01
    in each of 20 runs with their own seeds)."""
    early = [f"a-{n:05d}" for n in range(5_000)]
    late = [f"b-{n:05d}" for n in range(5_000)]
    p_values = []
    for run in range(20):
        order = draw(seed_of(run), early + late).order
        place = {entry: number for number, entry in enumerate(order)}
        p_values.append(stats.ks_2samp([place[e] for e in early], [place[e] for e in late]).pvalue)
    assert min(p_values) > 0.01, p_values
    # The check has teeth: the queue in arrival order fails it.
    assert stats.ks_2samp(range(5_000), range(5_000, 10_000)).pvalue < 1e-100
