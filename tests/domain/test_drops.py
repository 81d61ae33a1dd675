"""A product's drop mode (sneakers23/domain/drops.py): read from the staff's words, and what it asks of shoppers."""

from __future__ import annotations

import pytest

from sneakers23.domain.drops import MODES, DropMode, guests_refused, parse_drop_mode, sign_in_for_a_scheduled_drop


def test_a_mode_is_read_from_the_staffs_words():
    assert parse_drop_mode("queue") is DropMode.QUEUE
    assert parse_drop_mode(" Draw ") is DropMode.DRAW
    assert parse_drop_mode("first-come") is DropMode.FIRST_COME
    assert [str(mode) for mode in MODES] == ["first-come", "queue", "draw"]


@pytest.mark.parametrize("word", ["lottery", "", None, 1, "first come", ["queue"]])
def test_an_unknown_mode_says_which_there_are(word):
    with pytest.raises(ValueError, match="a drop mode is one of: first-come, queue, draw"):
        parse_drop_mode(word)


def test_a_queue_or_a_draw_is_one_place_per_account_so_it_takes_no_guests():
    assert [mode for mode in MODES if mode.needs_sign_in] == [DropMode.QUEUE, DropMode.DRAW]
    assert guests_refused(2, DropMode.FIRST_COME) is None
    assert guests_refused(2, DropMode.QUEUE) == "product 2 is a queue drop: only signed-in shoppers may take part in it"
    assert "draw drop" in guests_refused(2, DropMode.DRAW)
    assert len({mode.describe() for mode in MODES}) == 3


def test_a_new_drop_scheduled_sells_to_signed_in_shoppers_unless_the_staff_chose():
    assert sign_in_for_a_scheduled_drop(required=False, chosen=False)  # the default for a new drop
    assert not sign_in_for_a_scheduled_drop(required=False, chosen=True)  # guests too, as the staff chose
    assert sign_in_for_a_scheduled_drop(required=True, chosen=True)
    assert sign_in_for_a_scheduled_drop(required=True, chosen=False)  # (never turned off by a schedule)
