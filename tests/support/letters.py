"""The Mail port (inventory/ports.py) as a list of the letters posted to it, for tests."""

from __future__ import annotations


class Letters:
    """Each letter posted is kept in `posted`. With `sends`, it is sent at once (its receipt is
    called); without, it waits in `held`, as in a postbox whose process dies before sending it.
    `room_for`: how many it takes at once (`room`)."""

    def __init__(self, sends: bool = True, room_for: int = 10_000):
        self.posted = []
        self.held = []
        self.sends = sends
        self.room_for = room_for

    def post(self, letter, on_sent=None) -> bool:
        self.posted.append(letter)
        if not self.sends:
            self.held.append(letter)
        elif on_sent is not None:
            on_sent()
        return True

    def room(self) -> int:
        return self.room_for
