"""The admin dashboard's channel, `admin:dashboard`, on the admin deployment's sockets.

On join, a dashboard gets Phoenix's `presence_state` (every open shopper tab of the cluster, from a
mirror of the presence actor's board), then a `presence_diff` for every change, so the official
client's `Presence` class follows it. Every second it gets `drop`: each product's sizes with the
pairs available (from this node's live catalog), pairs sold per second and refusals by reason for
the last minute, each node's sockets, tabs and cache lag, and (from the database, every few seconds)
the accounts' figures and each draw's entries per size. "N in cart" is counted by the page
from the presence metas (the shoppers online whose carts hold the size), as in the original.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Protocol

from sneakers23.domain.catalog import Product
from sneakers23.domain.changes import WaitingLine
from sneakers23.domain.drops import DropMode
from sneakers23.domain.words import counted
from sneakers23.domain.presence import BoardRead, Diff
from sneakers23.domain.shopper_events import ShopperEvent
from sneakers23.serve import phoenix
from sneakers23.serve.channels import close_within
from sneakers23.serve.presence import PresenceMirror
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

TOPIC = "admin:dashboard"
ADMIN_SCOPE_KEY = "sneakers23.admin"  # set on an admin socket's scope once its token was checked
TICK_S = 1.0
FIGURES_TIMEOUT_S = 2.0
ACCOUNTS_EVERY_S = 5.0  # the accounts' figures are one count over their table: every few seconds is plenty
DRAWS_EVERY_S = 2.0  # a draw's entries per size: one grouped count, live enough at every other tick


class Feeds(Protocol):
    """Where the cluster's figures come from (the presence, activity and replication actors)."""

    async def follow_presence(self, epoch: str, cursor: int) -> BoardRead: ...

    async def figures(self) -> dict: ...


class ProductsInMemory(Protocol):
    def products(self) -> list[Product]: ...

    def line(self, product_id: int) -> WaitingLine | None: ...


def queue_text(line: WaitingLine | None) -> str:
    """A queue's state on the dashboard, from the line's summary this replica holds."""
    if line is None:
        return "queue: nobody has taken a place yet (places open once the release is scheduled)"
    if not line.opened:
        return f"queue: {counted(line.waiting, 'shopper')} in the pre-queue, shuffled at the release"
    live, used, ended = line.turns
    said = (f"queue: {counted(line.waiting, 'shopper')} waiting, {counted(live, 'turn')} live (each holds a shopper's pairs), "
            f"{used} bought, {ended} ended unused; ")
    if line.sold_out:
        return said + "sold out for now (every pair left is bought or held by a turn)"
    if line.pace_per_minute == 0:
        return said + "paused"
    return said + f"letting in {line.pace_per_minute:g} a minute"


def drop_view(products: list[Product], figures: dict, accounts: dict | None = None,
              draws: dict[int, dict] | None = None,
              lines: Callable[[int], WaitingLine | None] = lambda _product_id: None) -> dict:
    """The `drop` push: what the dashboard shows besides presence (`draws`: each draw's figures, by
    product; a product in draw mode without them shows its draw as not counted yet; `lines`: each
    queue's line, as memory holds it)."""
    nodes = figures.get("nodes") or {}
    lags = figures.get("lags") or {}
    activity = figures.get("activity") or {"sold_per_second": [], "sold": 0, "refusals": {}, "window_s": 60}
    return {
        "at": round(time.time(), 3),
        "products": [{"id": p.id, "released": p.released,
                      "release_at": p.release_at.isoformat() if p.release_at else None,
                      "sign_in_required": p.sign_in_required, "drop_mode": str(p.drop_mode),
                      "drop_mode_text": p.drop_mode.describe(),
                      "draw": (draws or {}).get(p.id),
                      "queue": queue_text(lines(p.id)) if p.drop_mode is DropMode.QUEUE else None,
                      "items": [{"id": item.id, "available": item.available_count} for item in p.items]}
                     for p in products],
        "activity": activity,
        "accounts": accounts,
        "nodes": [{"node": node_id, "sockets": nodes.get(node_id, {}).get("sockets", 0),
                   "tabs": nodes.get(node_id, {}).get("tabs", 0),
                   "lag_ms": lags.get(node_id, {}).get("max_ms"),
                   "reporting": node_id in nodes}
                  for node_id in sorted(set(nodes) | set(lags))],
    }


class EveryFewSeconds:
    """A figure read from the database at most every `every_s`, the last one kept while the
    database is away (a dashboard's tick must not cost a query per open dashboard)."""

    def __init__(self, read: Callable[[], Awaitable] | None, every_s: float, what: str):
        self._read, self._every_s, self._what = read, every_s, what
        self._read_at = -every_s
        self.value = None

    async def get(self):
        if self._read is not None and time.monotonic() - self._read_at >= self._every_s:
            self._read_at = time.monotonic()
            try:
                self.value = await asyncio.wait_for(self._read(), FIGURES_TIMEOUT_S)
            except Exception as error:  # (the database away: the last figures stay)
                log.info("the %s are late: %s", self._what, error)
        return self.value


class DashboardChannels:
    def __init__(self, live: ProductsInMemory, feeds: Feeds,
                 account_figures: Callable[[], Awaitable[dict]] | None = None,
                 draw_figures: Callable[[], Awaitable[dict]] | None = None):
        self._live = live
        self._feeds = feeds
        self._accounts = EveryFewSeconds(account_figures, ACCOUNTS_EVERY_S, "accounts' figures")
        self._draws = EveryFewSeconds(draw_figures, DRAWS_EVERY_S, "draws' figures")
        self._admins: set = set()
        self._mirror = PresenceMirror(feeds.follow_presence, self._send_state, self._send_diff)
        self._last_drop: dict | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started = False
        self._following: asyncio.Task | None = None  # the mirror, while a dashboard is open

    @staticmethod
    def owns(topic: str) -> bool:
        return topic.startswith("admin:")

    def join(self, connection, message: phoenix.Message) -> bool:
        session = connection.websocket.scope.get(ADMIN_SCOPE_KEY)
        if message.topic != TOPIC:
            connection.send(phoenix.reply(message, "error", {"reason": "unmatched topic"}))
            return False
        if session is None:  # (only the admin socket's route, after its token, sets it)
            connection.send(phoenix.reply(message, "error", {"reason": "unauthorized"}))
            return False
        self._start()
        self._admins.add(connection)
        connection.send(phoenix.reply(message, "ok", {"who": session.who}))
        if self._mirror.ready.is_set():
            connection.send(phoenix.push(TOPIC, "presence_state", self._mirror.state))
        if self._last_drop is not None:
            connection.send(phoenix.push(TOPIC, "drop", self._last_drop))
        return True

    def handle(self, connection, message: phoenix.Message) -> None:
        # Actions go through HTTP, with the session and its CSRF token: the socket only shows.
        connection.send(phoenix.reply(message, "error", {"reason": f"unknown event {message.event[:64]!r}"}))

    def rejoin(self, connection, message: phoenix.Message) -> None:
        connection.send(phoenix.reply(message, "ok", {"who": connection.websocket.scope[ADMIN_SCOPE_KEY].who}))

    def leave(self, connection, topic: str) -> None:
        self._admins.discard(connection)
        self._stop_following_if_unwatched()

    def _stop_following_if_unwatched(self) -> None:
        """No dashboard open: the presence of every tab is not mirrored for no one (a drop's crowd
        comes and goes by the thousand). The next dashboard starts again from the whole state."""
        if not self._admins and self._following is not None:
            self._following.cancel()
            self._following = None
            self._mirror.reset()

    async def close_session(self, session_id: str) -> None:
        """Close the dashboards of a session that logged out (its other tabs included)."""
        await self._close(lambda session: session.sid == session_id, "logged out")

    async def close_expired(self, now: float | None = None) -> None:
        """Close the dashboards whose session has ended: a socket never outlives its session."""
        now = time.time() if now is None else now
        await self._close(lambda session: session.until <= now, "session expired")

    async def _close(self, which, reason: str) -> None:
        for connection in list(self._admins):
            if which(connection.websocket.scope[ADMIN_SCOPE_KEY]):
                self._admins.discard(connection)
                await close_within(connection.websocket, phoenix.CLOSE_POLICY, reason)
        self._stop_following_if_unwatched()

    def publish(self, events: list[ShopperEvent]) -> None:
        pass  # (the dashboard reads the live catalog every tick: one sale or a thousand, one push)

    # --- pushes ---

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._started:
            self._started = True
            keep(self._tasks, loop.create_task(self._tick_forever()))
        if self._following is None:
            self._following = keep(self._tasks, loop.create_task(self._mirror.follow_forever()))

    def _send(self, frame: str) -> None:
        for connection in list(self._admins):
            connection.send(frame)

    def _send_state(self, state: dict) -> None:
        self._send(phoenix.push(TOPIC, "presence_state", state))

    def _send_diff(self, diff: Diff) -> None:
        self._send(phoenix.push(TOPIC, "presence_diff", diff.as_phoenix()))

    async def _tick_forever(self) -> None:
        while True:
            started = time.monotonic()
            if self._admins:
                try:
                    await self.close_expired()
                    await self._tick()
                except Exception:  # (never the end of the dashboards' figures)
                    log.exception("the dashboard's tick failed")
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))

    async def _tick(self) -> None:
        try:
            figures = await asyncio.wait_for(self._feeds.figures(), FIGURES_TIMEOUT_S)
        except Exception as error:  # an actor restarting: the next tick has them
            log.info("the dashboard's figures are late: %s", error)
            figures = {}
        accounts, draws = await asyncio.gather(self._accounts.get(), self._draws.get())  # (at once: each may wait 2 s)
        self._last_drop = drop_view(self._live.products(), figures, accounts, draws, self._live.line)
        self._send(phoenix.push(TOPIC, "drop", self._last_drop))
