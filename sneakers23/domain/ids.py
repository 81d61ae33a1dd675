"""What an id from outside (a URL, a form, a channel message) may look like: 1 to 9 ASCII digits.
`str.isdigit` is not the test: it takes "²" and "٣", which `int` then refuses, or reads as 3."""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{1,9}")
MAX_ID = 10**9 - 1


def parse_id(value: object) -> int | None:
    """The id, or None when the value is not one (a JSON number is taken as it is, when whole and
    in range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_ID else None
    if isinstance(value, str) and _ID.fullmatch(value):
        return int(value)
    return None
