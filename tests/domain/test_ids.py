"""Ids from outside: 1 to 9 ASCII digits, never what `str.isdigit` or `int` would also take."""

import pytest

from sneakers23.domain.ids import parse_id


@pytest.mark.parametrize("text, expected", [("7", 7), ("000123", 123), ("999999999", 999_999_999)])
def test_ascii_digits_are_an_id(text, expected):
    assert parse_id(text) == expected


@pytest.mark.parametrize("value", ["²", "٣", "1²", "", " 7", "7 ", "+7", "-7", "7_0", "1e3", "1234567890", "0x1f",
                                   None, True, 3.0, -1, 10**9, [7]])
def test_anything_else_is_not(value):
    assert parse_id(value) is None


def test_a_json_number_is_taken_when_whole_and_in_range():
    assert parse_id(42) == 42 and parse_id(0) == 0
