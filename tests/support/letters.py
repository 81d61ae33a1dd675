"""The Mail port (inventory/ports.py) as a list of the letters posted to it, for tests."""

from __future__ import annotations

from sneakers23.domain.accounts import Delivery


class Letters:
    """Each letter posted is kept in `posted`. With `sends`, it is sent at once (its receipt says
    so); without, it waits in `held`, as in a postbox whose process dies before sending it.
    `refused`: addresses whose letters are refused for good at once (a mailbox that does not exist).
    `room_for`: how many it takes at once (`room`)."""

    def __init__(self, sends: bool = True, room_for: int = 10_000, refused: tuple[str, ...] = (),
                 unreached: bool = False):
        self.posted = []
        self.held = []
        self.sends = sends
        self.room_for = room_for
        self.refused = refused
        self.unreached = unreached  # (the mail server away: every letter comes back unreached)

    def post(self, letter, on_done=None) -> bool:
        self.posted.append(letter)
        if not self.sends:
            self.held.append(letter)
        elif on_done is not None:
            on_done(Delivery.UNREACHED if self.unreached else
                    Delivery.REFUSED if letter.to in self.refused else Delivery.SENT)
        return True

    def room(self) -> int:
        return self.room_for
