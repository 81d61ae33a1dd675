"""The complete-product view: products in display order, each with its sizes and their levels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable

from sneakers23.domain.changes import (AccountChanged, AvailabilityChanged, Cart, Change, DrawFinished, ProductChange,
                                       WaitingLine)
from sneakers23.domain.drops import DropMode
from sneakers23.domain.levels import Level, level_for


@dataclass(frozen=True, slots=True)
class Item:
    """One size of a product, with how many pairs are left."""

    id: int
    sku: str
    size: str
    product_id: int
    available_count: int
    version: int

    @property
    def level(self) -> Level:
        return level_for(self.available_count)


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    sku: str
    order: int
    brand: str
    name: str
    color: str
    price_usd: int
    main_image_url: str
    released: bool
    version: int
    items: tuple[Item, ...] = ()
    release_at: datetime | None = None  # when an unreleased product goes on sale by itself
    sign_in_required: bool = False  # only a signed-in shopper with a verified address may buy it
    drop_mode: DropMode = DropMode.FIRST_COME  # how its pairs go to shoppers at the release


def complete_products(products: Iterable[Product], items: Iterable[Item]) -> list[Product]:
    """Products by display order (then id), each with its items sorted by id."""
    by_product: dict[int, list[Item]] = {}
    for item in items:
        by_product.setdefault(item.product_id, []).append(item)
    return [
        replace(product, items=tuple(sorted(by_product.get(product.id, ()), key=lambda i: i.id)))
        for product in sorted(products, key=lambda p: (p.order, p.id))
    ]


class Catalog:
    """A node's in-memory copy of the inventory (and of the shoppers' carts) that only ever moves
    forward.

    Every change carries the version of the database row it came from; a change is applied only
    when it is newer than what is held, so late, duplicated or reordered changes are harmless.

    An empty cart is not kept: memory holds the carts that hold something, so that shoppers who
    empty their carts (or a script minting shoppers that add and remove) leave nothing behind. A
    cart's change that arrives after the cart was emptied and forgotten is put right by
    anti-entropy (the database's total counts only the carts that hold something, as this does).
    """

    def __init__(self, products: Iterable[Product], carts: Iterable[Cart] = (), lines: Iterable[WaitingLine] = ()):
        self._products: dict[int, Product] = {}
        self._items: dict[int, Item] = {}
        self._carts: dict[str, Cart] = {cart.shopper_id: cart for cart in carts if not cart.is_empty}
        # The queued drops' lines, as last heard (their keeper sends them again every few seconds:
        # no anti-entropy reads them).
        self._lines: dict[int, WaitingLine] = {line.product_id: line for line in lines}
        for product in products:
            self._products[product.id] = replace(product, items=())
            for item in product.items:
                self._items[item.id] = item

    def products(self) -> list[Product]:
        return complete_products(self._products.values(), self._items.values())

    def product(self, product_id: int) -> Product | None:
        product = self._products.get(product_id)
        if product is None:
            return None
        items = sorted((i for i in self._items.values() if i.product_id == product_id), key=lambda i: i.id)
        return replace(product, items=tuple(items))

    def item(self, item_id: int) -> Item | None:
        return self._items.get(item_id)

    def cart(self, shopper_id: str) -> Cart | None:
        """The shopper's cart, or None when it holds nothing."""
        return self._carts.get(shopper_id)

    def carts(self) -> list[Cart]:
        return list(self._carts.values())

    def released(self, product_id: int) -> bool:
        product = self._products.get(product_id)
        return product is not None and product.released

    def sign_in_required(self, product_id: int) -> bool:
        product = self._products.get(product_id)
        return product is not None and product.sign_in_required

    def line(self, product_id: int) -> WaitingLine | None:
        return self._lines.get(product_id)

    def lines(self) -> list[WaitingLine]:
        return list(self._lines.values())

    def queued(self, product_id: int) -> bool:
        """Its pairs are sold to the shoppers its waiting room lets in (domain/waiting_room.py)."""
        product = self._products.get(product_id)
        return product is not None and product.drop_mode is DropMode.QUEUE

    def drawn(self, product_id: int) -> bool:
        """Its pairs go to the winners of its draw (domain/draws.py)."""
        product = self._products.get(product_id)
        return product is not None and product.drop_mode is DropMode.DRAW

    def apply(self, change: Change) -> bool:
        """Apply a change if it is newer than what is held; True when something changed."""
        if isinstance(change, ProductChange):
            product = self._products.get(change.product_id)
            if product is None or change.version <= product.version:
                return False
            self._products[product.id] = replace(product, released=change.released, version=change.version,
                                                 release_at=change.release_at,
                                                 sign_in_required=change.sign_in_required,
                                                 drop_mode=change.drop_mode)
            return True
        if isinstance(change, AvailabilityChanged):
            item = self._items.get(change.item_id)
            if item is None or change.version <= item.version:
                return False
            self._items[item.id] = replace(item, available_count=change.available_count, version=change.version)
            return True
        if isinstance(change, Cart):  # a cart unknown here is a new one, or was empty
            cart = self._carts.get(change.shopper_id)
            if cart is not None and change.version <= cart.version:
                return False
            if not change.is_empty:
                self._carts[change.shopper_id] = change
            else:  # (news even when it was not held: a tab may show what this memory missed)
                self._carts.pop(change.shopper_id, None)
            return True
        if isinstance(change, WaitingLine):
            line = self._lines.get(change.product_id)
            if line is not None and change.version <= line.version:
                return False
            self._lines[change.product_id] = change
            return True
        if isinstance(change, (AccountChanged, DrawFinished)):  # (no state here: passed on to the followers)
            return True
        raise TypeError(f"not a change: {change!r}")

    def version_total(self) -> int:
        """Sum of every row's version (of the carts, those that hold something)."""
        return sum(self.version_totals())

    def version_totals(self) -> tuple[int, int]:
        """The sums of the versions of the products and sizes, and of the carts held: equal to the
        database's when nothing was missed."""
        return (sum(p.version for p in self._products.values()) + sum(i.version for i in self._items.values()),
                sum(c.version for c in self._carts.values()))

    def reconcile(self, current: Iterable[Change], every_cart: bool = False,
                  touched: Iterable[str] = ()) -> tuple[list[Change], bool]:
        """Catch up with the database's current rows: apply every newer one.

        A row held at a newer version is fine (a change applied since the rows were read). With
        `every_cart` (`current` holds every cart that holds something), a cart held here that is
        not among them was emptied, and that change missed: it is forgotten too, unless a change of
        it was applied while the rows were read (`touched`: it may be newer than the read).
        Returns the changes applied, and False when moving forward cannot reach the database's
        state (a product or size unknown here), so the caller must reload instead.
        """
        current = list(current)
        applied: list[Change] = []
        if every_cart:
            keep = {change.shopper_id for change in current if isinstance(change, Cart)} | set(touched)
            for cart in [cart for shopper_id, cart in self._carts.items() if shopper_id not in keep]:
                emptied = cart.emptied()
                self.apply(emptied)
                applied.append(emptied)
        for change in current:
            if isinstance(change, ProductChange):
                held = self._products.get(change.product_id)
            elif isinstance(change, AvailabilityChanged):
                held = self._items.get(change.item_id)
            elif change.item_ids or change.shopper_id in self._carts:
                held = change  # a cart: new ones are made every day
            else:
                continue  # an empty cart not held here: nothing to mend
            if held is None:
                return applied, False
            if self.apply(change):
                applied.append(change)
        return applied, True
