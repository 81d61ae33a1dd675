"""A rehearsal shopper's socket (jobs/shoppers.py), as a tab's phoenix.js holds it: the Phoenix
wire protocol's frames, replies matched to their requests, heartbeats, and connecting and joining
again with the client's back-off when the store closes it. Every push goes to its shopper."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Callable, Protocol


class Shopper(Protocol):
    """What a socket tells its shopper (jobs/shoppers.py): each request and visit row, each push."""

    def note(self, kind: str, step: str, started: float | None, outcome: str) -> None: ...

    def pushed(self, topic: str, event: str, payload: dict) -> None: ...

HEARTBEAT_S = 25.0  # as the Phoenix client: the store closes a socket silent for 60 s
REPLY_WITHIN_S = 30.0
RECONNECT_AFTER_MS = (10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000)  # phoenix.js's, then 5 s
REJOIN_AFTER_S = (1, 2, 5, 10)  # a channel's join refused after a reconnect: phoenix.js's rejoinAfterMs


class Refused(Exception):
    """A join the store refused (its reply's reason)."""


class Socket:
    """One tab's socket: the product's and the cart's channels, replies matched to their requests,
    every push noted. Like phoenix.js, it connects again (with its back-off) when the store closes
    it or turns it away, and joins its channels again; the joins' answers bring the state back."""

    def __init__(self, shopper: Shopper, session, url: str, cookies: str):
        self.shopper, self.session, self.cookies = shopper, session, cookies
        self.url = url.replace("http", "ws", 1) + "/product_socket/websocket?vsn=2.0.0"
        self.ws = None
        self.refs = itertools.count(1)
        self.waiting: dict[str, asyncio.Future] = {}
        self.join_refs: dict[str, str] = {}  # by topic: a channel's messages carry its join's ref
        self.channels: dict[str, tuple[dict, str, Callable[[dict], None]]] = {}  # topic -> (payload, step, on joined)
        self.task: asyncio.Task | None = None
        self.closing = False
        self.lost = asyncio.Event()  # set when it could not connect again: the shopper gives up

    async def open(self) -> None:
        await self._connect()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> None:
        """Connected, trying again as the Phoenix client does while the store turns it away or is
        out of reach (the last failure is raised)."""
        import aiohttp

        for pause_ms in (*RECONNECT_AFTER_MS, None):
            try:
                self.ws = await self.session.ws_connect(self.url, headers={"Cookie": self.cookies},
                                                        autoping=True, max_msg_size=1 << 20)
                return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as refused:
                status = getattr(refused, "status", None)
                self.shopper.note("request", "socket", None, f"http {status}" if status else type(refused).__name__)
                if pause_ms is None or (status is not None and status not in (429, 503)):
                    raise
                await asyncio.sleep(pause_ms / 1000)

    async def request(self, topic: str, event: str, payload: dict, ref: str | None = None) -> dict:
        ref = ref or str(next(self.refs))
        reply = asyncio.get_running_loop().create_future()
        self.waiting[ref] = reply
        try:
            await self.ws.send_str(json.dumps([self.join_refs.get(topic), ref, topic, event, payload]))
            return await asyncio.wait_for(reply, REPLY_WITHIN_S)
        finally:
            self.waiting.pop(ref, None)

    async def join(self, topic: str, payload: dict, step: str, on_joined: Callable[[dict], None]) -> None:
        """Join the channel (again after every reconnect), `on_joined` given each join's answer."""
        self.channels[topic] = (payload, step, on_joined)
        try:
            answer = await self._join(topic, payload, step)
        except Refused:
            self.channels.pop(topic, None)  # (not joined: nothing to join again after a reconnect)
            raise
        except ConnectionError:  # (closed under the join: connected again, it is joined again, as phoenix.js does)
            self.shopper.note("request", step, None, "socket closed")
            return
        on_joined(answer)

    async def _join(self, topic: str, payload: dict, step: str) -> dict:
        started = time.perf_counter()
        ref = self.join_refs[topic] = str(next(self.refs))  # (a join's ref is its join ref, as phoenix.js sends it)
        reply = await self.request(topic, "phx_join", payload, ref)
        response = reply.get("response") if isinstance(reply.get("response"), dict) else {}
        ok = reply.get("status") == "ok"
        self.shopper.note("request", step, started, "ok" if ok else str(response.get("reason")))
        if not ok:
            raise Refused(response.get("reason"))
        return response

    async def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.shopper.note("visit", "socket_closed", None, "closed")
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def _run(self) -> None:
        again = False
        while True:
            loop = asyncio.get_running_loop()
            beat = loop.create_task(self._beat())
            # (joined again while its replies are read: the reader below is what answers them)
            joins = loop.create_task(self._join_again()) if again else None
            try:
                await self._read()
            finally:
                beat.cancel()
                if joins is not None:
                    joins.cancel()
            if self.closing:
                return
            self.shopper.note("visit", "socket_closed", None, "by the store")
            for reply in self.waiting.values():  # (nothing more will answer them)
                if not reply.done():
                    reply.set_exception(ConnectionError("the socket closed"))
            try:
                await self._connect()
            except Exception as error:  # (noted: the shopper gives up)
                self._lost(error)
                return
            again = True

    async def _join_again(self) -> None:
        """Every channel joined again once connected again; their answers to their shoppers. A
        join refused or unanswered is asked again after REJOIN_AFTER_S, as phoenix.js's
        `rejoinAfterMs` does (a store starting again answers "unavailable" for a moment); the
        shopper gives up after the last."""
        try:
            for topic, (payload, step, on_joined) in list(self.channels.items()):
                for pause_s in (*REJOIN_AFTER_S, None):
                    try:
                        on_joined(await self._join(topic, payload, step))
                        break
                    except (Refused, asyncio.TimeoutError):
                        if pause_s is None:
                            raise
                        await asyncio.sleep(pause_s)
        except ConnectionError:
            pass  # (closed again: the reader connects again, and this is done again)
        except Exception as error:  # (refused to the last: the shopper gives up, and closes it)
            self._lost(error)

    def _lost(self, error: Exception) -> None:
        self.shopper.note("visit", "error", None, f"reconnect: {type(error).__name__}")
        self.closing = True
        self.lost.set()

    async def _beat(self) -> None:
        for ref in itertools.count(1):
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.ws.send_str(json.dumps([None, f"h{ref}", "phoenix", "heartbeat", {}]))
            except (ConnectionError, RuntimeError):  # (closing: the reader sees it)
                return

    async def _read(self) -> None:
        import aiohttp

        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                _join_ref, ref, topic, event, payload = json.loads(message.data)
            except (ValueError, TypeError):
                self.shopper.note("visit", "bad_frame", None, message.data[:64])
                continue
            if event == "phx_reply":
                if (reply := self.waiting.get(ref)) is not None and not reply.done() and isinstance(payload, dict):
                    reply.set_result(payload)
                continue
            self.shopper.pushed(topic, event, payload)
