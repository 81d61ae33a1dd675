"""Checkout: buying the cart that the checkout page showed, all or nothing (the original's Checkout
context). Pure rules; `sneakers23/checkout.py` runs them against memory and the inventory."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sneakers23.domain.carts import CartLine
from sneakers23.domain.changes import Cart
from sneakers23.domain.purchases import PurchaseResult


class CheckoutRefusal(StrEnum):
    EMPTY = "empty"
    OUT_OF_STOCK = "out_of_stock"
    UNRELEASED = "unreleased"
    FAILED = "failed"
    CHANGED = "changed"  # (ours: the original's cart could not change under its checkout page)


CHECKOUT_MESSAGES = {  # the original's texts, and one of ours
    CheckoutRefusal.EMPTY: "Your cart is empty",
    CheckoutRefusal.OUT_OF_STOCK: "Your cart has out-of-stock shoes",
    CheckoutRefusal.UNRELEASED: "Your cart has unreleased shoes",
    CheckoutRefusal.FAILED: "Your purchase could not be completed",
    CheckoutRefusal.CHANGED: "Your cart changed in another tab: check it and purchase again",
}


def is_the_cart(cart: Cart, version: int, item_ids: list[int]) -> bool:
    """Whether a checkout form (the version and sizes its page showed) is the cart as it is."""
    return cart.version == version and sorted(cart.item_ids) == sorted(set(item_ids))


def checkout_refusal(lines: list[CartLine], item_ids: list[int]) -> CheckoutRefusal | None:
    """Why a checkout of these sizes (shown as `lines`) cannot start, in the original's order;
    None when it may. A size this shop does not know (no line) fails it."""
    if len(lines) != len(set(item_ids)):
        return CheckoutRefusal.FAILED
    if not lines:
        return CheckoutRefusal.EMPTY
    if any(line.out_of_stock for line in lines):
        return CheckoutRefusal.OUT_OF_STOCK
    if not all(line.released for line in lines):
        return CheckoutRefusal.UNRELEASED
    return None


def checkout_key(version: int) -> str:
    """The idempotency key of checking out a cart at one version: a double-click, a retry and two
    tabs checking out the same cart all send it, and the drop engine sells it once. (A cart's
    version only grows, so a key is never reused for other items.)"""
    return f"cart-{version}"


@dataclass(frozen=True)
class Bought:
    """The cart was sold now."""

    result: PurchaseResult

    @property
    def item_ids(self) -> list[int]:
        return [unit.item_id for unit in self.result.units]


@dataclass(frozen=True)
class AlreadyBought:
    """This cart, at this version, was bought before (a double-click, a retry, another tab)."""

    item_ids: list[int]


@dataclass(frozen=True)
class Refused:
    """Not sold: why, and the cart to show the shopper (to check and buy again)."""

    reason: CheckoutRefusal
    cart: Cart | None = None  # None: the cart as this node holds it
    detail: str | None = None

    @property
    def message(self) -> str:
        return CHECKOUT_MESSAGES[self.reason] + (f" ({self.detail})" if self.detail else "")


Outcome = Bought | AlreadyBought | Refused
