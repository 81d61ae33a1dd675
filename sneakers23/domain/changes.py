"""Change events: what happened to one database row, stamped with the row's new version; and two
events with no row of their own: an account's change (`AccountChanged`) and a draw's end
(`DrawFinished`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Union

from sneakers23.domain.drops import DropMode
from sneakers23.domain.levels import Level, level_for


@dataclass(frozen=True, slots=True)
class ProductReleased:
    """A product went on sale (`released`; the store writes only True: an unreleased product's
    state is a ReleaseScheduleChanged)."""

    product_id: int
    released: bool
    version: int
    release_at: datetime | None = None
    sign_in_required: bool = False  # only a signed-in shopper with a verified address may buy it
    drop_mode: DropMode = DropMode.FIRST_COME

    kind = "product_released"

    def __reduce__(self):  # (a dataclass pickles through fields(): changes cross to every cache)
        return ProductReleased, (self.product_id, self.released, self.version, self.release_at, self.sign_in_required,
                                 self.drop_mode)


@dataclass(frozen=True, slots=True)
class ReleaseScheduleChanged:
    """An unreleased product's state: its release time set, moved, or cancelled (None), or its
    other settings changed."""

    product_id: int
    version: int
    release_at: datetime | None
    sign_in_required: bool = False
    drop_mode: DropMode = DropMode.FIRST_COME

    kind = "release_schedule_changed"
    released = False

    def __reduce__(self):
        return ReleaseScheduleChanged, (self.product_id, self.version, self.release_at, self.sign_in_required,
                                        self.drop_mode)


ProductChange = (ProductReleased, ReleaseScheduleChanged)  # a product row's change (for isinstance)


def product_state(product_id: int, released: bool, version: int, release_at: datetime | None,
                  sign_in_required: bool = False,
                  drop_mode: DropMode = DropMode.FIRST_COME) -> ProductReleased | ReleaseScheduleChanged:
    """A product row's current state, as the change that leads to it (every product change carries
    the whole of it: caches apply a product's newest version, whichever change brought it)."""
    if released:
        return ProductReleased(product_id, True, version, release_at, sign_in_required, drop_mode)
    return ReleaseScheduleChanged(product_id, version, release_at, sign_in_required, drop_mode)


@dataclass(frozen=True, slots=True)
class AvailabilityChanged:
    item_id: int
    product_id: int
    available_count: int
    version: int

    kind = "availability_changed"

    def __reduce__(self):
        return AvailabilityChanged, (self.item_id, self.product_id, self.available_count, self.version)

    @property
    def level(self) -> Level:
        return level_for(self.available_count)


@dataclass(frozen=True, slots=True)
class Cart:
    """A shopper's cart: the sizes in it, newest first, at its row's version (a cart row and its
    items). Carts replicate by state: a cart's change is the cart as the change left it, so a copy
    that holds a newer version has nothing to learn from an older one."""

    shopper_id: str
    version: int
    item_ids: tuple[int, ...]

    kind = "cart_changed"

    def __reduce__(self):
        return Cart, (self.shopper_id, self.version, self.item_ids)

    @classmethod
    def new(cls, shopper_id: str) -> Cart:
        """The cart of a shopper who never put anything aside."""
        return cls(shopper_id, 0, ())

    @property
    def is_empty(self) -> bool:
        return not self.item_ids

    def holds(self, item_id: int) -> bool:
        return item_id in self.item_ids

    def emptied(self) -> Cart:
        """The cart emptied by a change after this one (its row's version is at least that)."""
        return Cart(self.shopper_id, self.version + 1, ())


@dataclass(frozen=True, slots=True)
class WaitingLine:
    """A queued drop's line as its keeper last left it (domain/waiting_room.py): all that a tab
    needs, with its own number in line, to show its place. It goes to every node by state, as a
    cart does; the keeper sends it again every few seconds, so a node that missed one catches up
    (it is what shoppers see: a purchase is decided by the database's admissions, never by this)."""

    product_id: int
    version: int  # grows with every move of the line (the waiting room's row)
    opened: bool  # the release came: the pre-queue was shuffled into the line
    head: int  # the number of the next to be let in: everyone numbered below it was let in, or left
    left: tuple[int, ...] = ()  # numbers at or past the head of those taken out of the line
    pace_per_minute: float = 0.0
    sold_out: bool = False  # the pairs left are all held or sold: nobody is let in for now
    waiting: int = 0  # in the pre-queue and the line
    turns: tuple[int, int, int] = (0, 0, 0)  # turns live, used (bought) and ended unused: the staff's figures

    kind = "waiting_line"

    def __reduce__(self):
        return WaitingLine, (self.product_id, self.version, self.opened, self.head, self.left, self.pace_per_minute,
                             self.sold_out, self.waiting, self.turns)


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """An account's sessions or standing changed: a session ended (a sign-out, everywhere, a new
    password), or it was locked, unlocked or its address verified. Each web replica forgets what it
    remembered of the account's sessions and asks the database again at its next request. An
    event, not a state: no version, applied whenever it comes (a replica that starts again from a
    snapshot forgets every session it remembered)."""

    account_id: int

    kind = "account_changed"

    def __reduce__(self):
        return AccountChanged, (self.account_id,)


@dataclass(frozen=True, slots=True)
class DrawFinished:
    """A product's draw gave every pair it could: each entrant's outcome is written. An event, as
    an AccountChanged is (no row, no version): every page of the product reads its entrant's
    outcome once, and a page that missed it asks again on its next join or its slow recheck."""

    product_id: int
    entries: int  # (how many pages may read at once: they spread their reads by it)

    kind = "draw_finished"

    def __reduce__(self):
        return DrawFinished, (self.product_id, self.entries)


InventoryChange = (ProductReleased, ReleaseScheduleChanged, AvailabilityChanged)  # (for isinstance)

Change = Union[ProductReleased, ReleaseScheduleChanged, AvailabilityChanged, Cart, WaitingLine, AccountChanged,
               DrawFinished]
