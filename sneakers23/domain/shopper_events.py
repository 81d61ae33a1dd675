"""What shoppers are told when the inventory changes (the original's rules).

A size's level change is pushed; a change that leaves a size out of stock is pushed even when it was
out before; the same level otherwise is not. Shoppers never see counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.changes import Cart, WaitingLine
from sneakers23.domain.levels import Level


@dataclass(frozen=True, slots=True)
class ProductWentOnSale:
    product_id: int


@dataclass(frozen=True, slots=True)
class ReleaseScheduled:
    """An unreleased product's release time was set, moved or cancelled (its countdown changes)."""

    product_id: int


@dataclass(frozen=True, slots=True)
class StockChanged:
    product_id: int
    item_id: int
    level: Level


@dataclass(frozen=True, slots=True)
class CartUpdated:
    """A shopper's cart changed: every tab of that shopper shows the new one (with its version,
    even when it is empty, which memory does not keep)."""

    shopper_id: str
    cart: Cart


@dataclass(frozen=True, slots=True)
class LineMoved:
    """A queued drop's line moved (someone let in, a sell-out, the pace): every tab waiting in it
    shows its place again."""

    line: WaitingLine


@dataclass(frozen=True, slots=True)
class DrawOver:
    """A product's draw ended: its pages read their entrants' outcomes (spread over its entries)."""

    product_id: int
    entries: int


@dataclass(frozen=True, slots=True)
class SessionsToCheck:
    """What a replica remembers of an account's sessions may be stale (an AccountChanged): it asks
    the database again. `None`: every account's (its copy of the node started again from a
    snapshot, and may have missed one)."""

    account_id: int | None


ShopperEvent = Union[ProductWentOnSale, ReleaseScheduled, StockChanged, CartUpdated, LineMoved, SessionsToCheck,
                     DrawOver]


def stock_change(before: Item | None, after: Item) -> StockChanged | None:
    if before is not None and before.level == after.level and after.level is not Level.OUT:
        return None
    return StockChanged(after.product_id, after.id, after.level)


def release_change(before: Product | None, after: Product) -> ProductWentOnSale | ReleaseScheduled | None:
    if after.released and (before is None or not before.released):
        return ProductWentOnSale(after.id)
    if not after.released and before is not None and before.release_at != after.release_at:
        return ReleaseScheduled(after.id)
    return None


def differences(before: Iterable[Product], after: Iterable[Product]) -> list[ShopperEvent]:
    """The events that take a page from `before` to `after` (after a cache restart, say)."""
    old_products = {p.id: p for p in before}
    old_items = {i.id: i for p in old_products.values() for i in p.items}
    events: list[ShopperEvent] = []
    for product in after:
        if (went := release_change(old_products.get(product.id), product)) is not None:
            events.append(went)
        for item in product.items:
            old = old_items.get(item.id)
            if old is None or old.level != item.level:
                events.append(StockChanged(item.product_id, item.id, item.level))
    return events


def cart_differences(before: Iterable[Cart], after: Iterable[Cart]) -> list[CartUpdated]:
    """The carts that changed between two snapshots. A cart gone from the second was emptied
    meanwhile (memory keeps no empty cart), at a version past the one held, or the shop was
    reseeded: its tabs are shown it empty."""
    old = {cart.shopper_id: cart for cart in before}
    new = {cart.shopper_id: cart for cart in after}
    changed = [CartUpdated(shopper_id, cart) for shopper_id, cart in new.items()
               if shopper_id not in old or old[shopper_id].version != cart.version]
    return changed + [CartUpdated(shopper_id, cart.emptied())
                      for shopper_id, cart in old.items() if shopper_id not in new]
