"""The tables. Stock sits in its own table because it is the hot, often-written part."""

from datetime import datetime, timezone

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from sneakers23.domain.draws import OUTCOMES
from sneakers23.domain.drops import MODES
from sneakers23.domain.waiting_room import STAGES


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamp(**kwargs):
    return Field(default_factory=_now, sa_column_kwargs={"nullable": False, **kwargs}, sa_type=DateTime(timezone=True))


class ProductRow(SQLModel, table=True):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint(f"drop_mode IN ({', '.join(repr(str(mode)) for mode in MODES)})", name="drop_mode_known"),
        CheckConstraint("drop_mode = 'first-come' OR sign_in_required", name="drop_mode_needs_sign_in"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=32, unique=True)
    order: int = Field(default=0)
    brand: str = Field(max_length=255)
    name: str = Field(max_length=255)
    color: str = Field(max_length=255)
    price_usd: int
    main_image_url: str = Field(max_length=1024)
    released: bool = Field(default=False)
    # When set on an unreleased product, the release clock (actors/release_clock.py) releases it then.
    release_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Only a signed-in shopper whose address is verified may buy it (domain/purchases.py).
    sign_in_required: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The staff chose `sign_in_required` (either way); until then a scheduled drop turns it on.
    sign_in_chosen: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # How its pairs go to shoppers at the release (domain/drops.py); a queue or a draw is one place
    # per account, so it sells to signed-in shoppers only: the CHECK below is the net under that rule.
    drop_mode: str = Field(default="first-come", max_length=16, sa_column_kwargs={"server_default": "first-come"})
    # Grows on every change to the row; caches apply only newer versions.
    version: int = Field(default=1)
    inserted_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ItemRow(SQLModel, table=True):
    """One size of a product: what is actually sold."""

    __tablename__ = "items"

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=32, unique=True)
    size: str = Field(max_length=16)
    product_id: int = Field(foreign_key="products.id", index=True)
    inserted_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ItemAvailabilityRow(SQLModel, table=True):
    __tablename__ = "item_availabilities"
    __table_args__ = (CheckConstraint("available_count >= 0", name="available_count_not_negative"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="items.id", unique=True)
    available_count: int
    version: int = Field(default=1)
    inserted_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class OrderRow(SQLModel, table=True):
    """One row per pair sold, written in the same transaction as the decrement."""

    __tablename__ = "orders"
    __table_args__ = (
        # At most one pair of each size per shopper.
        UniqueConstraint("shopper_id", "item_id", name="orders_one_pair_per_size"),
        # A repeated purchase (same shopper, same key) finds its first result instead of selling again.
        UniqueConstraint("shopper_id", "idempotency_key", "line", name="orders_idempotency_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shopper_id: str = Field(max_length=64)
    item_id: int = Field(foreign_key="items.id", index=True)
    product_id: int = Field(foreign_key="products.id")
    idempotency_key: str = Field(max_length=128)
    line: int = Field(default=0)  # position of the unit in its purchase
    # The item's count and version right after this sale: the purchase's result, kept for replays.
    available_count_after: int
    version_after: int
    inserted_at: datetime = _timestamp()


class ShopperProductPairsRow(SQLModel, table=True):
    """Pairs of one product bought by one shopper: a row the database locks, so that one
    shopper's concurrent purchases cannot pass the per-product limit together."""

    __tablename__ = "shopper_product_pairs"
    __table_args__ = (CheckConstraint("pairs >= 0", name="pairs_not_negative"),)

    shopper_id: str = Field(max_length=64, primary_key=True)
    product_id: int = Field(foreign_key="products.id", primary_key=True)
    pairs: int = Field(default=0)


class CartRow(SQLModel, table=True):
    """A shopper's cart. Its version grows with every change (caches apply only newer ones), and
    every change updates the row first, so one shopper's changes from several tabs take turns."""

    __tablename__ = "carts"

    shopper_id: str = Field(max_length=64, primary_key=True)
    version: int = Field(default=0)
    updated_at: datetime = _timestamp(index=True)  # anti-entropy reads the carts changed lately


class CartItemRow(SQLModel, table=True):
    """One size in a cart: at most one pair of each."""

    __tablename__ = "cart_items"

    shopper_id: str = Field(max_length=64, foreign_key="carts.shopper_id", primary_key=True)
    item_id: int = Field(foreign_key="items.id", primary_key=True)
    added_at: datetime = _timestamp()


class AdminAuditRow(SQLModel, table=True):
    """What the shop's staff did from the admin dashboard, and each login: who, what, when, and how
    it went. Failed logins of the last minute, from everywhere, are the login throttle."""

    __tablename__ = "admin_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _timestamp(index=True)
    who: str = Field(max_length=64)
    action: str = Field(max_length=32)
    target: str = Field(max_length=64)
    ok: bool
    result: str = Field(max_length=512)
    client: str = Field(max_length=64)  # the address it came from


class AccountRow(SQLModel, table=True):
    """A shopper's account. `email_key` (the address, case-folded) is what makes it unique."""

    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254, unique=True)
    password_hash: str = Field(max_length=255)
    verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    locked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = _timestamp()


class AccountLinkRow(SQLModel, table=True):
    """A link sent by email (verify the address, reset the password). Only the token's SHA-256 is
    kept: a copy of the table opens no account. Used once, then marked."""

    __tablename__ = "account_links"

    token_hash: str = Field(max_length=64, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    purpose: str = Field(max_length=16)
    made_at: datetime = _timestamp()
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AccountSessionRow(SQLModel, table=True):
    """A signed-in browser. Kept in the database (by the SHA-256 of its token) so that signing out
    everywhere, a password change or a lock ends every one of them, on every node."""

    __tablename__ = "account_sessions"

    token_hash: str = Field(max_length=64, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    created_at: datetime = _timestamp()
    client: str = Field(max_length=64)  # the address it signed in from
    user_agent: str = Field(max_length=256)


class DrawRow(SQLModel, table=True):
    """A product's draw (drop mode `draw`): made when the staff choose the mode, with the
    commitment to its secret seed that the product page shows; at the close, the record of the
    shuffle (domain/fairness.py, as JSON, the seed in it) that anyone can check."""

    __tablename__ = "draws"

    product_id: int = Field(foreign_key="products.id", primary_key=True)
    seed: str = Field(max_length=128)  # hex; secret until the record publishes it
    commitment: str = Field(max_length=64)  # SHA-256 of the seed, hex: published from the start
    record: str | None = Field(default=None, sa_type=Text)
    closed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # every pair given
    told_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # every entrant written to
    inserted_at: datetime = _timestamp()


class DrawEntryRow(SQLModel, table=True):
    """One account's entry in a draw, with its size: one per account (the unique index), and its
    outcome (domain/draws.py). A winner's purchase marks it bought in the sale's transaction."""

    __tablename__ = "draw_entries"
    __table_args__ = (
        UniqueConstraint("product_id", "shopper_id", name="draw_entries_one_per_account"),
        UniqueConstraint("product_id", "entry_id", name="draw_entries_entry_id_unique"),
        UniqueConstraint("proof", name="draw_entries_proof_once"),
        CheckConstraint(f"outcome IN ({', '.join(repr(str(o)) for o in OUTCOMES)})", name="draw_outcome_known"),
    )

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="draws.product_id", index=True)
    shopper_id: str = Field(max_length=64)  # the account's shopper id (domain/accounts.py)
    entry_id: str = Field(max_length=32)  # opaque: what the published record names it by
    item_id: int = Field(foreign_key="items.id")
    outcome: str = Field(default="entered", max_length=16)
    note: str = Field(default="", max_length=255)  # why it failed, or was removed
    proof: str | None = Field(default=None, max_length=64)  # its proof of work's challenge: each is taken once
    told_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # its letter sent (or given up on, or no account)
    entered_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class WaitingRoomRow(SQLModel, table=True):
    """A queued drop's waiting room (drop mode `queue`): made when the staff choose the mode, with
    the commitment to the secret seed its pre-queue is shuffled with at the release (the product
    page shows it); the shuffle's record from then on. Its keeper (inventory/waiting_rooms.py)
    moves `version` whenever the line moves."""

    __tablename__ = "waiting_rooms"

    product_id: int = Field(foreign_key="products.id", primary_key=True)
    seed: str = Field(max_length=128)  # hex; secret until the record publishes it
    commitment: str = Field(max_length=64)  # SHA-256 of the seed, hex: published from the start
    record: str | None = Field(default=None, sa_type=Text)
    opened_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # the release: shuffled
    pace_per_minute: float | None = Field(default=None)  # set by the staff; None: the default pace
    version: int = Field(default=1, sa_type=BigInteger)  # (milliseconds of the clock, at least: db/waiting_rooms.moved)
    inserted_at: datetime = _timestamp()


class WaitingPlaceRow(SQLModel, table=True):
    """One account's place in a waiting room: one per account (the unique index), numbered in line
    at the release (or on arrival after it), let in for a window, then bought or expired. A
    purchase of a queued drop marks its admission bought in the sale's transaction."""

    __tablename__ = "waiting_places"
    __table_args__ = (
        UniqueConstraint("product_id", "shopper_id", name="waiting_places_one_per_account"),
        UniqueConstraint("product_id", "entry_id", name="waiting_places_entry_id_unique"),
        UniqueConstraint("product_id", "number", name="waiting_places_number_unique"),
        UniqueConstraint("proof", name="waiting_places_proof_once"),
        CheckConstraint(f"stage IN ({', '.join(repr(str(s)) for s in STAGES)})", name="waiting_stage_known"),
        Index("ix_waiting_places_joined", "product_id", "joined_at"),  # (the keeper's window of joins)
    )

    id: int | None = Field(default=None, primary_key=True)  # (its order: the arrival order)
    product_id: int = Field(foreign_key="waiting_rooms.product_id", index=True)
    shopper_id: str = Field(max_length=64)  # the account's shopper id (domain/accounts.py)
    entry_id: str = Field(max_length=32)  # opaque: what the published record names it by
    stage: str = Field(max_length=16)
    number: int | None = Field(default=None)
    until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # an admission's end
    proof: str | None = Field(default=None, max_length=64)  # its proof of work's challenge: each is taken once
    joined_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
