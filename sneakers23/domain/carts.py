"""Shopping carts: the sizes a shopper puts aside before checkout, the rules of adding one, and
what the cart panel and the checkout page show of a cart (the original's chapter 9, checked on the
server this time).

A cart holds at most one pair of each size. Holding a size reserves nothing: the checkout buys
through the drop engine like any purchase, so a size may sell out while it sits in a cart (it is
then struck through, never removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.changes import Cart
from sneakers23.domain.drops import DropMode
from sneakers23.domain.levels import Level

MAX_ITEMS_PER_CART = 20  # as many as one purchase may hold


class CartRefusal(StrEnum):
    NOT_FOUND = "not_found"  # (the original's name)
    NOT_RELEASED = "not_released"
    SOLD_OUT = "sold_out"
    DUPLICATE_ITEM = "duplicate_item"  # (the original's name)
    ALREADY_BOUGHT = "already_bought"
    LIMIT_REACHED = "limit_reached"
    CART_FULL = "cart_full"
    NOT_IN_CART = "not_in_cart"  # a removal of a size the cart does not hold
    SOLD_BY_DRAW = "sold_by_draw"  # a draw's pairs go to its winners, never through a cart


def refusal_message(refusal: CartRefusal, max_pairs: int) -> str:
    """What the page shows when an add is refused."""
    return {
        CartRefusal.NOT_FOUND: "There is no such shoe",
        CartRefusal.NOT_RELEASED: "This shoe is not on sale yet",
        CartRefusal.SOLD_OUT: "Sorry, this size is sold out",
        CartRefusal.DUPLICATE_ITEM: "This size is already in your cart",
        CartRefusal.ALREADY_BOUGHT: "You already bought this size",
        CartRefusal.LIMIT_REACHED: f"You can buy at most {max_pairs} pairs of this shoe, counting the pairs you bought",
        CartRefusal.CART_FULL: f"A cart holds at most {MAX_ITEMS_PER_CART} pairs",
        CartRefusal.NOT_IN_CART: "This size is not in your cart",
        CartRefusal.SOLD_BY_DRAW: "This shoe is sold by draw: enter the draw on its page",
    }[refusal]


def refuse_from_memory(item: Item | None, product: Product | None) -> CartRefusal | None:
    """What an add is certainly refused for, as a node's memory of the catalog sees it; None when
    the database must tell (it checks everything again, with the cart and the pairs the shopper
    bought). A stale refusal is safe: the shopper tries again a moment later. The cart itself is
    not judged from memory: a tab's own change may not have come back from replication yet."""
    if item is None or product is None:
        return CartRefusal.NOT_FOUND
    if product.drop_mode is DropMode.DRAW:
        return CartRefusal.SOLD_BY_DRAW
    if not product.released:
        return CartRefusal.NOT_RELEASED
    if item.level is Level.OUT:
        return CartRefusal.SOLD_OUT
    return None


def refuse_removal_from_memory(cart: Cart, item_id: int, seen: Cart | None = None) -> CartRefusal | None:
    """A removal of a size not in the node's copy of the cart changes nothing: refused there, so
    that anonymous input never reaches the database for nothing. Unless the cart the tab was last
    answered with (`seen`: its own add, a moment ago, not yet replicated here) is newer and holds
    the size: then the database tells."""
    if cart.holds(item_id):
        return None
    if seen is not None and seen.version > cart.version and seen.holds(item_id):
        return None
    return CartRefusal.NOT_IN_CART


@dataclass(frozen=True, slots=True)
class SizeFacts:
    """What the database says about a size, read under the carts' locks."""

    product_id: int
    released: bool
    available_count: int
    drawn: bool = False  # its product is sold by draw


@dataclass(frozen=True, slots=True)
class CartRequest:
    """One change a tab asks for: put a size in (`add`), or take sizes out (`remove`)."""

    shopper_id: str
    add: int | None = None
    remove: tuple[int, ...] = ()


@dataclass
class HeldCart:
    """A cart as the database holds it while a batch of changes is settled."""

    version: int
    held: list[tuple[int, int]]  # (item, product), newest first

    def state(self, shopper_id: str) -> Cart:
        return Cart(shopper_id, self.version, tuple(item for item, _product in self.held))


def refuse_add(size: SizeFacts | None, item_id: int, held: list[tuple[int, int]], bought_pairs: int,
               bought_this_size: bool, max_pairs: int) -> CartRefusal | None:
    """Why a size may not go in the cart (`held`: its (item, product) pairs; `bought_pairs`: the
    shopper's pairs of the size's product), in the order the shopper is told; None when it goes in."""
    if size is None:
        return CartRefusal.NOT_FOUND
    if size.drawn:
        return CartRefusal.SOLD_BY_DRAW
    if not size.released:
        return CartRefusal.NOT_RELEASED
    if size.available_count == 0:
        return CartRefusal.SOLD_OUT
    if any(held_item == item_id for held_item, _product in held):
        return CartRefusal.DUPLICATE_ITEM
    if len(held) >= MAX_ITEMS_PER_CART:
        return CartRefusal.CART_FULL
    if bought_this_size:
        return CartRefusal.ALREADY_BOUGHT
    in_cart = sum(1 for _item, product in held if product == size.product_id)
    if bought_pairs + in_cart >= max_pairs:
        return CartRefusal.LIMIT_REACHED
    return None


def settle(requests: list[CartRequest], carts: dict[str, HeldCart], sizes: dict[int, SizeFacts],
           bought: dict[tuple[str, int], int], owned: set[tuple[str, int]],
           max_pairs: int) -> list[Cart | CartRefusal]:
    """Apply the requests in order to the carts (changed in place): each one's outcome, the cart
    after it (its version moved on when it changed anything) or why it was refused. What the
    database then writes is the difference; a refusal writes nothing."""
    outcomes: list[Cart | CartRefusal] = []
    for request in requests:
        cart = carts[request.shopper_id]
        if request.add is not None:
            size = sizes.get(request.add)
            refusal = refuse_add(size, request.add, cart.held,
                                 bought.get((request.shopper_id, size.product_id), 0) if size else 0,
                                 (request.shopper_id, request.add) in owned, max_pairs)
            if refusal is not None:
                outcomes.append(refusal)
                continue
            cart.held.insert(0, (request.add, size.product_id))
        else:
            kept = [(item, product) for item, product in cart.held if item not in request.remove]
            if len(kept) == len(cart.held):  # none of them was in it: nothing changes
                outcomes.append(cart.state(request.shopper_id))
                continue
            cart.held = kept
        cart.version += 1
        outcomes.append(cart.state(request.shopper_id))
    return outcomes


@dataclass(frozen=True, slots=True)
class CartLine:
    """One size in a cart, as the panel and the checkout page show it."""

    item_id: int
    product_id: int
    sku: str
    size: str
    brand: str
    name: str
    color: str
    price_usd: int
    image: str
    released: bool
    out_of_stock: bool

    def view(self) -> dict:
        return {"item_id": self.item_id, "product_id": self.product_id, "sku": self.sku, "size": self.size,
                "brand": self.brand, "name": self.name, "color": self.color, "price_usd": self.price_usd,
                "image": self.image, "released": self.released, "out_of_stock": self.out_of_stock}


def lines_for(item_ids, item: Callable[[int], Item | None],
              product: Callable[[int], Product | None]) -> list[CartLine]:
    """The sizes, sorted by item id (as the original shows a cart). A size the catalog no longer
    has (the shop was reseeded) is left out."""
    lines = []
    for item_id in sorted(item_ids):
        held = item(item_id)
        owner = None if held is None else product(held.product_id)
        if held is None or owner is None:
            continue
        lines.append(CartLine(held.id, owner.id, held.sku, held.size, owner.brand, owner.name, owner.color,
                              owner.price_usd, owner.main_image_url, owner.released, held.level is Level.OUT))
    return lines


def cart_view(cart: Cart, lines: list[CartLine]) -> dict:
    """The `cart` push and reply: every line, the count, and the subtotal of what can be bought
    (a struck-through size costs nothing)."""
    return {
        "version": cart.version,
        "items": [line.view() for line in lines],
        "count": len(lines),
        "subtotal_usd": sum(line.price_usd for line in lines if not line.out_of_stock),
    }


def merge_requests(anonymous: Cart, into_shopper_id: str) -> list[CartRequest]:
    """The changes that merge a cart filled before sign-in into the account's cart, in one batch:
    its sizes added oldest first (so that its newest stays the newest), each as an add from a tab
    would be, so that the same rules decide (a size in both carts is kept once, as the original's
    cart holds no duplicate; one past the limit or sold out stays out); then it is emptied."""
    if anonymous.is_empty or anonymous.shopper_id == into_shopper_id:
        return []
    return [CartRequest(into_shopper_id, add=item_id) for item_id in reversed(anonymous.item_ids)] + \
        [CartRequest(anonymous.shopper_id, remove=anonymous.item_ids)]
