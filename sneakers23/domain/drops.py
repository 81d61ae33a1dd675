"""How a product's pairs go to shoppers at its release: its drop mode, set by the staff before the
release (docs/fairness.md for the queue's and the draw's shuffle)."""

from __future__ import annotations

from enum import StrEnum


class DropMode(StrEnum):
    FIRST_COME = "first-come"  # whoever buys first (the original store's only way)
    QUEUE = "queue"  # a waiting room: the pre-queue shuffled at the release, admitted at a pace
    DRAW = "draw"  # entries for a window, one size each; winners drawn per size at its close

    @property
    def needs_sign_in(self) -> bool:
        """A place in a queue, or an entry in a draw, is one per person: one per account."""
        return self is not DropMode.FIRST_COME

    def describe(self) -> str:
        return {DropMode.FIRST_COME: "first come, first served",
                DropMode.QUEUE: "a queue: a waiting room shuffled at the release, then admitted at a pace",
                DropMode.DRAW: "a draw: entries for a window, winners drawn at its close"}[self]


MODES = tuple(DropMode)


def parse_drop_mode(value: object) -> DropMode:
    """A mode from the staff's words (the CLI, the dashboard's JSON); ValueError says which there are."""
    try:
        return DropMode(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"a drop mode is one of: {', '.join(MODES)}") from None


def guests_refused(product_id: int, mode: DropMode) -> str | None:
    """Why a product may not be sold to guests again, if it may not: its mode needs accounts."""
    if mode.needs_sign_in:
        return f"product {product_id} is a {mode} drop: only signed-in shoppers may take part in it"
    return None


def sign_in_for_a_scheduled_drop(required: bool, chosen: bool) -> bool:
    """Whether a product whose release is being scheduled sells to signed-in shoppers only: a new
    drop does by default, for its pair limit to count per person (a cookie is free to mint), unless
    the staff chose either way for it. (A release made at once keeps what is set: the store a new
    user starts sells its first product to anyone.)"""
    return required or not chosen
