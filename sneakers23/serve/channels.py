"""Product channels: topic `product:{id}` per product, speaking the Phoenix protocol (and, on the
same sockets, other kinds of channel: the shoppers' carts, serve/carts.py, and the admin dashboard,
serve/admin.py).

A push is encoded once and sent to every socket that joined its topic, each send started at once
(`eager`): a socket that cannot take it right away gets a task that finishes it and the frames
queued behind it, so one slow shopper never holds up the others, and one too far behind is closed.
A join is answered with the product's current state, so a page that reconnects re-syncs itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from sneakers23.domain.catalog import Product
from sneakers23.domain.ids import parse_id
from sneakers23.domain.draws import outcome_reads_spread_s
from sneakers23.domain.shopper_events import DrawOver, ProductWentOnSale, ReleaseScheduled, ShopperEvent, StockChanged
from sneakers23.domain.views import item_level
from sneakers23.serve import eager, phoenix
from sneakers23.serve.guards import send_now_of
from sneakers23.serve.render import size_html
from sneakers23.tasks import InTurns, keep

log = logging.getLogger(__name__)

TOPIC_PREFIX = "product:"
MAX_CHANNELS_PER_SOCKET = 32
MAX_MESSAGES_PER_SECOND = 50  # sustained; bursts up to MESSAGE_BURST
MESSAGE_BURST = 200
OUTBOX_LIMIT = 1_000  # frames waiting for a slow socket before it is closed ...
OUTBOX_BYTES = 1024 * 1024  # ... or bytes
IDLE_TIMEOUT_S = 60.0  # the Phoenix client sends a heartbeat every 30 s
CLOSE_WAIT_S = 5.0
FANOUT_SENDS_PER_TURN = 256  # sends a push makes in one turn of the event loop (about 10-25 ms here)


class Products(Protocol):
    def product(self, product_id: int) -> Product | None: ...


class Channels(Protocol):
    """Another kind of channel on the same sockets (carts, the admin dashboard): the hub hands it
    the joins, messages and leaves of the topics it owns, and every batch of shopper events."""

    def owns(self, topic: str) -> bool: ...

    def join(self, connection: "Connection", message: phoenix.Message) -> bool: ...

    def rejoin(self, connection: "Connection", message: phoenix.Message) -> None:
        """Answer a join of a topic this connection has joined already: the state, and no change."""

    def handle(self, connection: "Connection", message: phoenix.Message) -> None: ...

    def leave(self, connection: "Connection", topic: str) -> None: ...

    def publish(self, events: list[ShopperEvent]) -> None: ...


def join_state(product: Product) -> dict:
    return {
        "released": product.released,
        "size_html": size_html(product),
        "items": [item_level(item) for item in product.items],
    }


def utf8_size(frame: str) -> int:
    """A frame's size on the wire (orjson writes non-ASCII characters as themselves)."""
    return len(frame) if frame.isascii() else len(frame.encode())


class Connection:
    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self._send_now = send_now_of(websocket)  # (the replica's own server's write, serve/guards.py)
        self.backlog: deque[str] = deque()  # frames waiting behind a send that had to wait
        self.backlog_bytes = 0
        self.sending: asyncio.Task | None = None  # finishing that send, then the backlog
        self.joined: set[str] = set()  # topics
        self.joined_at: dict[str, int] = {}  # by product topic: the hub's last push published at its join
        self.overflowed = False
        self.dropped = False
        self.broken = False  # a send failed: the socket is going away
        self._allowance = float(MESSAGE_BURST)
        self._checked = time.monotonic()
        self._tasks: set[asyncio.Task] = set()  # its closes under way

    def send(self, frame: str) -> None:
        """Send now if the socket takes it at once (the usual case: written by the replica's own
        server when it has one, else through ASGI, with no task at all); else queue behind the send
        under way, in order, and close a socket that falls too far behind."""
        if self.broken:
            return
        if self.sending is not None:
            if len(self.backlog) >= OUTBOX_LIMIT or self.backlog_bytes + utf8_size(frame) > OUTBOX_BYTES:
                if not self.overflowed:  # close it now; its page re-syncs when it rejoins
                    self.overflowed = True
                    keep(self._tasks, asyncio.get_running_loop().create_task(self._close_slow()))
                return
            self.backlog.append(frame)
            self.backlog_bytes += utf8_size(frame)
            return
        try:
            if self._send_now is not None and self._send_now(frame):
                return
            coroutine = self.websocket.send_text(frame)  # (ASGI: it waits for a paused socket, or refuses a closed one)
            waiting = eager.start(coroutine)
        except (Exception, asyncio.CancelledError) as error:  # never out into the publisher's loop
            self._failed(error)
            return
        if waiting is not eager.DONE:
            self.sending = asyncio.get_running_loop().create_task(self._send_rest(coroutine, waiting))

    async def _send_rest(self, coroutine, waiting) -> None:
        try:
            await eager.finish(coroutine, waiting)
            while self.backlog:
                frame = self.backlog.popleft()
                self.backlog_bytes -= utf8_size(frame)
                await self.websocket.send_text(frame)
        except Exception as error:  # (a cancel, from serve() closing the socket, passes through)
            self._failed(error)
        finally:
            self.sending = None

    def _failed(self, error: BaseException) -> None:
        """A send failed (mostly: the socket is already closing). Send nothing more, and close it
        in case it is not, so it neither stays subscribed nor holds a request slot."""
        if not self.broken:
            self.broken = True
            log.debug("a send failed, closing the socket: %r", error)
            keep(self._tasks, asyncio.get_running_loop().create_task(
                close_within(self.websocket, 1011, "internal error")))

    async def _close_slow(self) -> None:
        await close_within(self.websocket, phoenix.CLOSE_POLICY, "too slow to keep up")

    def allow_message(self) -> bool:
        now = time.monotonic()
        self._allowance = min(MESSAGE_BURST, self._allowance + (now - self._checked) * MAX_MESSAGES_PER_SECOND)
        self._checked = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True


async def close_within(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, but give up after CLOSE_WAIT_S: a client that stopped reading never takes the close
    frame either, and its socket must not hold a request slot for ever."""
    try:
        await asyncio.wait_for(websocket.close(code=code, reason=reason), CLOSE_WAIT_S)
    except Exception:
        pass


class ChannelHub:
    """Every socket of this replica, by topic; turns shopper events into pushes."""

    def __init__(self, products: Products, kinds: list[Channels] = ()):
        self._products = products
        self._kinds = list(kinds)
        self._topics: dict[str, set[Connection]] = {}
        self._connections: set[Connection] = set()
        self._refuse_until = 0.0
        # A join (and every rejoin after a reconnect storm) is answered from here: rendered once
        # per product and catalog generation.
        self._join_states: dict[int, tuple[int, dict]] = {}
        # Pushes published and not yet sent to every subscriber: [number, topic, frame, the
        # subscribers when published, how many were sent], in order.
        self._outgoing: deque[list] = deque()
        self._published = 0
        self._sending = InTurns(self._send_some)
        self._opened = self._closed = 0  # sockets, since the start (the replica's freezer counts them)

    @property
    def sockets(self) -> int:
        return len(self._connections)

    @property
    def opened_and_closed(self) -> tuple[int, int]:
        """Sockets opened and closed since the start."""
        return self._opened, self._closed

    @property
    def pushing(self) -> bool:
        """Whether a push is still going out, part by part."""
        return self._sending.running

    async def drop_all(self, refuse_for_s: float = 0.0) -> int:
        """Close every socket, and refuse new ones for refuse_for_s (their clients retry)."""
        self._refuse_until = time.monotonic() + refuse_for_s
        dropped = list(self._connections)
        for connection in dropped:
            connection.dropped = True
            try:
                await connection.websocket.close(code=1012, reason="service restart")
            except Exception:
                pass
        return len(dropped)

    # --- pushes ---

    def publish(self, events: list[ShopperEvent]) -> None:
        for kind in self._kinds:
            kind.publish(events)
        for event in events:
            if not isinstance(event, (ProductWentOnSale, ReleaseScheduled, StockChanged, DrawOver)):
                continue  # (a cart's event: the cart channels' own)
            topic = f"{TOPIC_PREFIX}{event.product_id}"
            subscribers = self._topics.get(topic)
            if not subscribers:
                continue
            if isinstance(event, ProductWentOnSale):
                product = self._products.product(event.product_id)
                if product is None:
                    continue
                frame = phoenix.push(topic, "released", {"size_html": size_html(product)})
            elif isinstance(event, ReleaseScheduled):
                product = self._products.product(event.product_id)
                if product is None:
                    continue
                frame = phoenix.push(topic, "release_scheduled", {"size_html": size_html(product)})
            elif isinstance(event, StockChanged):
                frame = phoenix.push(topic, "stock_change", {
                    "product_id": event.product_id, "item_id": event.item_id, "level": str(event.level),
                })
            elif isinstance(event, DrawOver):  # (each page reads its entrant's outcome, once, within the spread)
                frame = phoenix.push(topic, "draw_finished", {"spread_s": outcome_reads_spread_s(event.entries)})
            else:
                continue
            self._published += 1
            self._outgoing.append([self._published, topic, frame, list(subscribers), 0])
        self._send_outgoing()

    def _send_outgoing(self) -> None:
        """The pushes waiting, in order: as many sends as one turn of the loop may take now, the
        rest in later turns (a push to 1,500 sockets in one callback held the loop for a second,
        bench/rehearsal.py, and every join and reply of the replica waited behind it)."""
        self._sending.start()

    def _send_some(self) -> bool:
        """Up to FANOUT_SENDS_PER_TURN sends from the head of the waiting pushes; True while some
        wait. A socket that left the topic since is skipped, and one that joined it after the push
        was published (its join's answer was newer)."""
        budget = FANOUT_SENDS_PER_TURN
        while self._outgoing and budget > 0:
            push = self._outgoing[0]
            published, topic, frame, subscribers, done = push
            end = min(len(subscribers), done + budget)
            for position in range(done, end):
                push[4] = position + 1  # (moved on first: a send that raised is not made again)
                connection = subscribers[position]
                if topic in connection.joined and connection.joined_at.get(topic, 0) < published:
                    connection.send(frame)  # (it never raises: a failed send closes its own socket)
            budget -= end - done
            if end == len(subscribers):
                self._outgoing.popleft()
        return bool(self._outgoing)

    # --- one socket ---

    async def serve(self, websocket: WebSocket) -> None:
        vsn = websocket.query_params.get("vsn", phoenix.VERSION)
        await websocket.accept()
        if time.monotonic() < self._refuse_until:
            await websocket.close(code=1013, reason="try again later")
            return
        if vsn != phoenix.VERSION:
            await websocket.close(code=phoenix.CLOSE_INVALID, reason=f"only protocol {phoenix.VERSION} is spoken")
            return
        connection = Connection(websocket)
        self._connections.add(connection)
        self._opened += 1
        close = (1000, "")
        try:
            while True:
                received = await asyncio.wait_for(websocket.receive(), IDLE_TIMEOUT_S)
                if received["type"] == "websocket.disconnect":
                    close = None
                    break
                text = received.get("text")
                if text is None:
                    close = (phoenix.CLOSE_INVALID, "binary frames are not part of the JSON protocol")
                    break
                if not connection.allow_message():
                    close = (phoenix.CLOSE_POLICY, "too many messages")
                    break
                try:
                    self._handle(connection, phoenix.decode(text))
                except phoenix.ProtocolError as error:
                    close = (error.code, error.reason)
                    break
                if connection.overflowed:
                    close = (phoenix.CLOSE_POLICY, "too slow to keep up")
                    break
        except (WebSocketDisconnect, asyncio.TimeoutError, RuntimeError):
            close = None  # gone, idle past the heartbeat, or closed under us (drop_all)
        finally:
            if connection.dropped:
                close = None
            self._gone(connection)
            if close is not None:
                await close_within(websocket, close[0], close[1])

    def _gone(self, connection: Connection) -> None:
        """A socket closes: out of every topic, and sent nothing more (a push still going out part
        by part included)."""
        self._connections.discard(connection)
        for topic in connection.joined:
            self._leave(connection, topic)
        connection.joined.clear()
        connection.broken = True
        self._closed += 1
        if connection.sending is not None:
            connection.sending.cancel()

    def _handle(self, connection: Connection, message: phoenix.Message) -> None:
        if message.topic == phoenix.SOCKET_TOPIC and message.event == phoenix.HEARTBEAT:
            connection.send(phoenix.reply(message, "ok"))
        elif message.event == phoenix.JOIN:
            self._join(connection, message)
        elif message.event == phoenix.LEAVE:
            if message.topic in connection.joined:
                self._leave(connection, message.topic)
                connection.joined.discard(message.topic)
            connection.send(phoenix.reply(message, "ok"))
            connection.send(phoenix.encode(message.join_ref, message.ref, message.topic, phoenix.CLOSE, {}))
        elif message.topic not in connection.joined:
            connection.send(phoenix.reply(message, "error", {"reason": "unmatched topic"}))
        elif (kind := self._kind_of(message.topic)) is not None:
            kind.handle(connection, message)
        else:
            connection.send(phoenix.reply(message, "error", {"reason": "unknown event"}))

    def _join(self, connection: Connection, message: phoenix.Message) -> None:
        if message.topic in connection.joined and (kind := self._kind_of(message.topic)) is not None:
            kind.rejoin(connection, message)  # (a client that timed out its join: nothing changes)
            return
        if message.topic not in connection.joined and len(connection.joined) >= MAX_CHANNELS_PER_SOCKET:
            connection.send(phoenix.reply(message, "error", {"reason": "too many channels on one socket"}))
            return
        if (kind := self._kind_of(message.topic)) is not None:
            if kind.join(connection, message):
                connection.joined.add(message.topic)
            return
        product = self._product_for(message.topic)
        if product is None:
            reason = "unknown product" if message.topic.startswith(TOPIC_PREFIX) else "unmatched topic"
            connection.send(phoenix.reply(message, "error", {"reason": reason}))
            return
        # A join (or a rejoin after a reconnect) is answered with the current state: newer than
        # every push published so far, which it is not sent.
        connection.joined.add(message.topic)
        connection.joined_at[message.topic] = self._published
        self._topics.setdefault(message.topic, set()).add(connection)
        connection.send(phoenix.reply(message, "ok", self._join_state(product)))

    def _join_state(self, product: Product) -> dict:
        generation = getattr(self._products, "generation", None)
        cached = self._join_states.get(product.id)
        if generation is None or cached is None or cached[0] != generation:
            cached = self._join_states[product.id] = (generation, join_state(product))
        return cached[1]

    def _leave(self, connection: Connection, topic: str) -> None:
        if (kind := self._kind_of(topic)) is not None:
            kind.leave(connection, topic)
            return
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._topics[topic]

    def _kind_of(self, topic: str) -> Channels | None:
        return next((kind for kind in self._kinds if kind.owns(topic)), None)

    def _product_for(self, topic: str) -> Product | None:
        if not topic.startswith(TOPIC_PREFIX):
            return None
        product_id = parse_id(topic[len(TOPIC_PREFIX):])
        return None if product_id is None else self._products.product(product_id)
