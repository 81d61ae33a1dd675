"""Cart channels: topic `cart:{shopper id}`, one per shopper, on the same sockets as the products.

A tab joins with the signed cart token its page carries and gets the cart at once. `add_item` and
`remove_item` go to the database (through the inventory, in its threads: the replica's loop holds
thousands of sockets) and are answered with the cart they left, or with an error that says why. The
change is published after its commit, comes back through this node's cache like every change, and is
pushed as `cart` to every tab of the shopper on every node; a size in a cart that sells out is
pushed the same way, struck through. Pushes and replies carry the cart's version: a tab shows the
newest it has seen (a reply may overtake the push of the same change).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sneakers23.domain.accounts import Account, account_shopper_id, shops_as_account
from sneakers23.domain.carts import (CartLine, CartRefusal, cart_view, refusal_message, refuse_from_memory,
                                     refuse_removal_from_memory)
from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.changes import Cart
from sneakers23.domain.ids import parse_id
from sneakers23.domain.shopper_events import CartUpdated, ShopperEvent, StockChanged
from sneakers23.errors import DatabaseUnavailable, SchemaMissing
from sneakers23.serve import phoenix
from sneakers23.serve.channels import close_within
from sneakers23.serve.presence import TabTracker, page_of
from sneakers23.domain.purchases import signed_in
from sneakers23.serve.shoppers import (COOKIE, SESSION_COOKIE, CartTokens, SessionCookies, ShopperCookies, same_secret,
                                       session_mark)
from sneakers23.tasks import InTurns, keep

log = logging.getLogger(__name__)

CART_PREFIX = "cart:"
# How soon an account's socket is closed once its session ended elsewhere: every account socket of a
# replica is looked up again this often (in batched queries: 10,000 sockets are 2 queries a second).
SOCKET_RECHECK_S = 10.0
CART_PUSHES_PER_TURN = 64  # carts pushed in one turn of the event loop
MAX_CHANGES_WAITING = 8  # a tab's cart changes queued behind each other, before more are refused

SIGNED_OUT = "This session has ended: reload the page, and sign in again"
TOKEN_MESSAGES = {
    "invalid_token": "This cart token is not valid: reload the page",
    "expired_token": "This cart token has expired: reload the page",
}


class CartReads(Protocol):
    """The node's memory (the live catalog)."""

    def item(self, item_id: int) -> Item | None: ...

    def product(self, product_id: int) -> Product | None: ...

    def cart(self, shopper_id: str) -> Cart: ...

    def cart_lines(self, cart: Cart) -> list[CartLine]: ...


class CartWrites(Protocol):
    """The inventory API's cart operations (they write the database, then publish)."""

    async def add_to_cart_async(self, shopper_id: str, item_id: int) -> Cart | CartRefusal: ...

    async def remove_from_cart_async(self, shopper_id: str, item_ids: list[int]) -> Cart: ...

    def refused_from_memory(self, what: str, reason: str) -> None: ...

    async def session_account_async(self, session_token: str) -> Account | None: ...


def _error(reason: str, message: str) -> dict:
    return {"reason": reason, "message": message}


class CartChannels:
    def __init__(self, live: CartReads, inventory: CartWrites, tokens: CartTokens, max_pairs: int,
                 presence: TabTracker | None = None, cookies: ShopperCookies | None = None,
                 sessions: SessionCookies | None = None):
        self._live = live
        self._presence = presence  # a joined cart channel is a shopper's open tab
        self._inventory = inventory
        self._tokens = tokens
        self._cookies = cookies
        self._sessions = sessions  # (None: no account's cart can be joined)
        self._accounts_joined: dict[object, tuple[str, str]] = {}  # an account's socket -> (shopper, session)
        self._pending: set = set()  # an account's sockets whose join waits for their session's check
        self._rechecking: asyncio.Task | None = None
        self._max_pairs = max_pairs
        self._topics: dict[str, set] = {}  # shopper id -> its tabs' connections on this replica
        self._locks: dict[object, asyncio.Lock] = {}  # one tab's changes, one after another
        self._waiting: dict[object, int] = {}
        self._seen: dict[object, Cart] = {}  # the newest cart each tab was answered with
        self._due: dict[str, Cart] = {}  # carts to push, in order, past what one turn of the loop sends
        self._pushes = InTurns(self._push_some)
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def owns(topic: str) -> bool:
        return topic.startswith(CART_PREFIX)

    def view(self, cart: Cart) -> dict:
        return cart_view(cart, self._live.cart_lines(cart))

    # --- joining and leaving ---

    def join(self, connection, message: phoenix.Message) -> bool:
        """Answer a join; True when the connection joined."""
        shopper_id = message.topic[len(CART_PREFIX):]
        params = message.payload if isinstance(message.payload, dict) else {}
        holder, why, bound = self._tokens.read_bound(params.get("token"))
        if holder is not None and not self._same_shopper(connection, holder, bound):
            holder, why = None, "invalid_token"  # a token taken from another browser's page
        if holder is None or holder != shopper_id:
            why = why or "invalid_token"
            connection.send(phoenix.reply(message, "error", _error(why, TOKEN_MESSAGES[why])))
            return False
        if connection in self._locks or connection in self._pending:  # a page has one cart: a socket joins one
            connection.send(phoenix.reply(message, "error", _error("one_cart", "a socket joins one cart")))
            return False
        if signed_in(shopper_id):
            # An account's cart is neither shown nor changed before its session is known to be live
            # (the cookie's signature was checked: a copy of it outlives a sign-out everywhere).
            token = self._sessions.token(getattr(connection.websocket, "cookies", {}).get(SESSION_COOKIE))
            self._pending.add(connection)
            keep(self._tasks, asyncio.get_running_loop().create_task(
                self._join_when_live(connection, message, shopper_id, params, token)))
            return True
        self._joined(connection, message, shopper_id, params)
        return True

    def _joined(self, connection, message: phoenix.Message, shopper_id: str, params: dict) -> None:
        self._topics.setdefault(shopper_id, set()).add(connection)
        self._locks.setdefault(connection, asyncio.Lock())
        cart = self._live.cart(shopper_id)
        connection.send(phoenix.reply(message, "ok", self.view(cart)))
        if self._presence is not None:
            self._presence.joined((connection, message.topic), shopper_id, page_of(params), list(cart.item_ids))

    async def _join_when_live(self, connection, message: phoenix.Message, shopper_id: str, params: dict,
                              token: str) -> None:
        live = await self._session_live(shopper_id, token)
        if connection not in self._pending:
            return  # (it left meanwhile)
        self._pending.discard(connection)
        if not live:
            connection.send(phoenix.reply(message, "error", _error("signed_out", SIGNED_OUT)))
            await close_within(connection.websocket, phoenix.CLOSE_POLICY, "signed out")
            return
        self._joined(connection, message, shopper_id, params)
        self._accounts_joined[connection] = (shopper_id, token)
        if self._rechecking is None:
            self._rechecking = keep(self._tasks, asyncio.get_running_loop().create_task(self._recheck_forever()))

    async def _session_live(self, shopper_id: str, session_token: str) -> bool:
        """Whether the session still shops as this account (while the database is away: yes, as
        the pages do)."""
        try:
            account = await self._inventory.session_account_async(session_token)
        except (DatabaseUnavailable, SchemaMissing):
            return True
        return account is not None and shops_as_account(account) and account_shopper_id(account.id) == shopper_id

    async def _recheck_forever(self) -> None:
        """Now and then, every account's socket here is checked again (the lookups of a round go in
        a few queries): a session ended after its socket joined (signed out everywhere, a reset, a
        lock) closes that socket within SOCKET_RECHECK_S."""
        while True:
            await asyncio.sleep(SOCKET_RECHECK_S)
            joined = list(self._accounts_joined.items())
            await asyncio.gather(*(self._close_if_ended(connection, shopper_id, token)
                                   for connection, (shopper_id, token) in joined), return_exceptions=True)

    async def _close_if_ended(self, connection, shopper_id: str, session_token: str) -> None:
        if not await self._session_live(shopper_id, session_token):
            self._accounts_joined.pop(connection, None)
            await close_within(connection.websocket, phoenix.CLOSE_POLICY, "signed out")

    def _same_shopper(self, connection, holder: str, bound: str) -> bool:
        """A browser's socket carries the shopper cookie: it must be the token's shopper. (A script
        that sends no cookie has the token alone, which it can only have read from a page.) An
        account's token is bound to a session: the socket must carry that session's cookie."""
        cookies = getattr(connection.websocket, "cookies", {})
        if signed_in(holder):
            token = self._sessions.token(cookies.get(SESSION_COOKIE)) if self._sessions is not None else None
            return bool(bound) and token is not None and same_secret(session_mark(token), bound)
        cookie = cookies.get(COOKIE)
        return cookie is None or self._cookies is None or self._cookies.read(cookie) == holder

    def rejoin(self, connection, message: phoenix.Message) -> None:
        if connection in self._pending:  # (the first join's answer is on its way)
            connection.send(phoenix.reply(message, "error", _error("joining", "The cart is still joining: try again")))
            return
        connection.send(phoenix.reply(message, "ok", self.view(self._live.cart(message.topic[len(CART_PREFIX):]))))

    def leave(self, connection, topic: str) -> None:
        shopper_id = topic[len(CART_PREFIX):]
        tabs = self._topics.get(shopper_id)
        if tabs is not None:
            tabs.discard(connection)
            if not tabs:
                del self._topics[shopper_id]
                self._due.pop(shopper_id, None)  # (a tab that joins later is answered with the cart as it is then)
        self._locks.pop(connection, None)
        self._waiting.pop(connection, None)
        self._seen.pop(connection, None)
        self._accounts_joined.pop(connection, None)
        self._pending.discard(connection)
        if self._presence is not None:
            self._presence.left((connection, topic))

    # --- a tab's messages ---

    def handle(self, connection, message: phoenix.Message) -> None:
        if connection in self._pending:
            connection.send(phoenix.reply(message, "error", _error("joining", "The cart is still joining: try again")))
            return
        if message.event not in ("add_item", "remove_item"):
            connection.send(phoenix.reply(message, "error", _error("unknown_event", f"unknown event {message.event[:64]!r}")))
            return
        # (a button's value is a string, a script's may be a number)
        item_id = parse_id(message.payload.get("item_id")) if isinstance(message.payload, dict) else None
        if item_id is None or item_id == 0:
            connection.send(phoenix.reply(message, "error", _error("bad_request", "item_id is a whole number")))
            return
        if message.event == "add_item":
            item = self._live.item(item_id)
            refusal = refuse_from_memory(item, None if item is None else self._live.product(item.product_id))
        else:
            refusal = refuse_removal_from_memory(self._live.cart(message.topic[len(CART_PREFIX):]), item_id,
                                                 self._seen.get(connection))
        if refusal is not None:  # refused from memory: no database
            self._inventory.refused_from_memory("cart", refusal)
            self._refuse(connection, message, refusal)
            return
        if self._waiting.get(connection, 0) >= MAX_CHANGES_WAITING:
            connection.send(phoenix.reply(message, "error", _error("busy", "Too many cart changes at once: wait a moment")))
            return
        self._waiting[connection] = self._waiting.get(connection, 0) + 1
        keep(self._tasks, asyncio.get_running_loop().create_task(self._change(connection, message, item_id)))

    def _refuse(self, connection, message: phoenix.Message, refusal: CartRefusal) -> None:
        connection.send(phoenix.reply(message, "error", _error(str(refusal), refusal_message(refusal, self._max_pairs))))

    async def _change(self, connection, message: phoenix.Message, item_id: int) -> None:
        shopper_id = message.topic[len(CART_PREFIX):]
        lock = self._locks.get(connection) or asyncio.Lock()  # (made at the join; gone once it left)
        try:
            async with lock:
                if message.event == "add_item":
                    outcome = await self._inventory.add_to_cart_async(shopper_id, item_id)
                else:
                    outcome = await self._inventory.remove_from_cart_async(shopper_id, [item_id])
        except (DatabaseUnavailable, SchemaMissing) as error:
            log.warning("a cart change failed: %s", error)
            connection.send(phoenix.reply(message, "error", _error(
                "unavailable", "The store cannot change carts right now: try again in a moment")))
            return
        except Exception:
            log.exception("a cart change failed")
            connection.send(phoenix.reply(message, "error", _error("error", "Your cart could not be changed")))
            return
        finally:
            if connection in self._waiting:
                self._waiting[connection] -= 1
        if isinstance(outcome, CartRefusal):
            self._refuse(connection, message, outcome)
        else:
            seen = self._seen.get(connection)
            if connection in self._locks and (seen is None or outcome.version > seen.version):  # (still joined)
                self._seen[connection] = outcome
            connection.send(phoenix.reply(message, "ok", self.view(outcome)))

    # --- pushes ---

    def publish(self, events: list[ShopperEvent]) -> None:
        """Push the cart again to every tab here whose cart changed, or holds a size whose stock
        level changed (struck through when it sold out)."""
        if not self._topics:
            return
        changed: dict[str, Cart] = {}  # (the event's cart: an emptied one, which memory forgets, has its version)
        sizes: set[int] = set()
        for event in events:
            if isinstance(event, CartUpdated):
                if event.shopper_id in self._topics:
                    changed[event.shopper_id] = event.cart
                    if self._presence is not None:
                        self._presence.cart_changed(event.shopper_id, list(event.cart.item_ids))
            elif isinstance(event, StockChanged):
                sizes.add(event.item_id)
        if sizes:
            for shopper_id in self._topics:
                cart = self._live.cart(shopper_id)
                if shopper_id not in changed and sizes.intersection(cart.item_ids):
                    changed[shopper_id] = cart
        # Pushed CART_PUSHES_PER_TURN carts a turn of the loop, the rest in later turns: a size sold
        # out in a drop is in hundreds of carts, and their pushes in one callback held the replica's
        # loop for 160 ms (bench/rehearsal.py, py-spy), every socket of it waiting. (A cart due again
        # is pushed once, as it is then; a tab shows the newest version it has seen.)
        for shopper_id, cart in changed.items():  # (a newer cart waiting is kept: memory may hold an older one
            waiting = self._due.get(shopper_id)  # than an emptied cart's push, which it forgot)
            if waiting is None or cart.version >= waiting.version:
                self._due[shopper_id] = cart
        self._pushes.start()

    @property
    def pushing(self) -> bool:
        """Whether carts are still being pushed, part by part."""
        return self._pushes.running

    def _push_some(self) -> bool:
        """Up to CART_PUSHES_PER_TURN of the carts due, oldest first; True while some wait."""
        for _ in range(min(CART_PUSHES_PER_TURN, len(self._due))):
            shopper_id = next(iter(self._due))
            cart = self._due.pop(shopper_id)
            tabs = self._topics.get(shopper_id)  # (none: its tabs left meanwhile)
            if tabs:
                frame = phoenix.push(f"{CART_PREFIX}{shopper_id}", "cart", self.view(cart))
                for connection in list(tabs):
                    connection.send(frame)
        return bool(self._due)

