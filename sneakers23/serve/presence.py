"""Presence in the web replicas (the board itself: domain/presence.py, actors/presence.py).

- `TabTracker`, in each node's channel replica: the shopper tabs whose sockets it holds (a tab is
  a cart channel joined with the page it shows). What changed is reported to the presence actor in
  small batches (a burst of joins is one report), and a heartbeat every second says the node lives.
- `PresenceMirror`, where admin dashboards are served: a copy of the board, followed from a cursor,
  whose every diff is handed on as Phoenix's `presence_diff`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Awaitable, Callable

from sneakers23.domain.presence import BoardRead, Diff, Report, TabJoined, TabLeft, apply_diff
from sneakers23.following import follow

log = logging.getLogger(__name__)

GATHER_S = 0.05  # changes that come within this go in one report
HEARTBEAT_S = 1.0  # a report at least this often, changes or not (the board drops silent nodes)
MAX_PAGE_CHARS = 64


def page_of(params: object) -> str:
    """The page a tab says it shows (the original's join parameter), or "/" when it says nothing usable."""
    page = params.get("page") if isinstance(params, dict) else None
    if not isinstance(page, str) or not page.startswith("/") or len(page) > MAX_PAGE_CHARS or not page.isprintable():
        return "/"
    return page


class TabTracker:
    def __init__(self, node_id: str, report: Callable[[Report], Awaitable[bool]], sockets: Callable[[], int]):
        self.source = uuid.uuid4().hex  # this life of the replica
        self._node_id = node_id
        self._report = report
        self._sockets = sockets
        self._tabs: dict[object, tuple[str, str, dict]] = {}  # (connection, topic) -> (tab id, shopper, meta)
        self._by_shopper: dict[str, set[object]] = {}
        self._pending: dict[str, TabJoined | TabLeft] = {}  # per tab, the newest of its changes
        self._numbered = 0
        self._seq = 0
        self._full = True  # the board does not know this source yet
        self._changed = asyncio.Event()

    @property
    def tabs(self) -> int:
        return len(self._tabs)

    # --- what the cart channels tell it ---

    def joined(self, connection: object, shopper_id: str, page: str, items: list[int]) -> None:
        if connection in self._tabs:
            self.left(connection)
        self._numbered += 1
        tab = f"{self.source[:12]}-{self._numbered}"
        meta = {"page": page, "node": self._node_id, "items": sorted(items), "online_at": int(time.time() * 1000)}
        self._tabs[connection] = (tab, shopper_id, meta)
        self._by_shopper.setdefault(shopper_id, set()).add(connection)
        self._queue(TabJoined(tab, shopper_id, meta))

    def left(self, connection: object) -> None:
        held = self._tabs.pop(connection, None)
        if held is None:
            return
        tab, shopper_id, _meta = held
        tabs = self._by_shopper.get(shopper_id)
        if tabs is not None:
            tabs.discard(connection)
            if not tabs:
                del self._by_shopper[shopper_id]
        self._queue(TabLeft(tab))

    def cart_changed(self, shopper_id: str, items: list[int]) -> None:
        items = sorted(items)
        for connection in self._by_shopper.get(shopper_id, ()):
            tab, _shopper, meta = self._tabs[connection]
            if meta["items"] != items:
                meta = {**meta, "items": items}
                self._tabs[connection] = (tab, shopper_id, meta)
                self._queue(TabJoined(tab, shopper_id, meta))

    def _queue(self, delta: TabJoined | TabLeft) -> None:
        self._pending[delta.tab] = delta
        self._changed.set()

    # --- reporting ---

    def next_report(self) -> Report:
        """What to send now: the changes since the last report, or every tab when the board must
        learn them all. (Taken from the pending changes: put back with `failed` if not delivered.)"""
        self._seq += 1
        sockets = self._sockets()
        if self._full:
            self._pending.clear()
            deltas = tuple(TabJoined(tab, shopper, meta) for tab, shopper, meta in self._tabs.values())
            return Report(self.source, self._node_id, self._seq, deltas, full=True, sockets=sockets)
        deltas, self._pending = tuple(self._pending.values()), {}
        return Report(self.source, self._node_id, self._seq, deltas, sockets=sockets)

    def delivered(self, taken: bool) -> None:
        self._full = not taken

    def failed(self) -> None:
        self._full = True  # the changes taken are in the whole state sent next

    async def report_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), HEARTBEAT_S)
                await asyncio.sleep(GATHER_S)
            except asyncio.TimeoutError:
                pass
            self._changed.clear()
            report = self.next_report()
            try:
                self.delivered(await self._report(report))
            except Exception as error:  # the presence actor restarting: it gets everything next time
                log.info("presence report failed: %s", error)
                self.failed()
                await asyncio.sleep(HEARTBEAT_S)


class PresenceMirror:
    """A copy of the cluster's presence board, kept by following it."""

    def __init__(self, follow: Callable[[str, int], Awaitable[BoardRead]],
                 on_state: Callable[[dict], None], on_diff: Callable[[Diff], None]):
        self.state: dict = {}
        self._follow = follow
        self._on_state = on_state
        self._on_diff = on_diff
        self._epoch = ""
        self._cursor = 0
        self.ready = asyncio.Event()

    def reset(self) -> None:
        """Forget the board: the next read starts from its whole state."""
        self.state, self._epoch, self._cursor = {}, "", 0
        self.ready.clear()

    def take(self, read: BoardRead) -> None:
        if read.state is not None:
            self.state = read.state
            self._on_state(self.state)
        for diff in read.diffs:
            apply_diff(self.state, diff)
            self._on_diff(diff)
        self._epoch, self._cursor = read.epoch, read.cursor
        self.ready.set()

    def _take(self, read: BoardRead) -> tuple[str, int]:
        self.take(read)
        return self._epoch, self._cursor

    async def follow_forever(self) -> None:
        while True:
            try:
                await follow(self._follow, self._take, self._epoch, self._cursor)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the presence actor restarting: start again from its state
                log.info("following presence failed: %s", error)
                self._epoch = ""
                await asyncio.sleep(HEARTBEAT_S)
