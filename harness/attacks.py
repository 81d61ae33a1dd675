"""What a hostile client does to the store, from a source address of its own (127.0.0.2, 127.0.0.3, …
are all this machine), and what an honest shopper from another address sees meanwhile. Used by the
edge tests (tests/serve/test_hostile.py) and by bench/hostile.py.

Every attack is bounded: a count of connections, held until `close()`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field

from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in

HOSTILE, HONEST = "127.0.0.2", "127.0.0.3"


@dataclass
class Held:
    """Connections an attack holds open, and how many the store refused (an answer, or a close)."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.StreamReader] = field(default_factory=list)
    refused: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (Exception, asyncio.TimeoutError):
                pass
        self.writers.clear()


def _upgrade(host: str, port: int, path: str) -> bytes:
    """A WebSocket handshake's request, as a browser sends it."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def _open(host: str, port: int, source: str):
    return await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(source, 0)), 5)


async def slow_bodies(host: str, port: int, count: int, source: str = HOSTILE, path: str = "/checkout") -> Held:
    """`count` connections that send a POST's headers with `Content-Length: 4000`, then no body."""
    held = Held()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               "Content-Length: 4000\r\n\r\n").encode()
    await _each(count, lambda: _send_and_hold(host, port, source, request, held))
    return held


async def slow_headers(host: str, port: int, count: int, source: str = HOSTILE) -> Held:
    """`count` connections that send the start of a request's headers, and never their end."""
    held = Held()
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode()
    await _each(count, lambda: _send_and_hold(host, port, source, request, held))
    return held


async def idle_sockets(host: str, port: int, count: int, source: str = HOSTILE,
                       path: str = "/product_socket/websocket?vsn=2.0.0") -> Held:
    """`count` WebSocket handshakes, each held open and idle once accepted. Counts the answers by status."""
    held = Held()

    async def one() -> None:
        try:
            reader, writer = await _open(host, port, source)
        except (OSError, asyncio.TimeoutError):
            held.refused += 1
            return
        writer.write(_upgrade(host, port, path))
        try:
            status_line = await asyncio.wait_for(reader.readline(), 10)
            status = int(status_line.split()[1]) if status_line else 0
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            status = 0
        held.statuses[status] = held.statuses.get(status, 0) + 1
        if status == 101:
            held.writers.append(writer)
            held.readers.append(reader)
        else:
            held.refused += 1
            writer.close()

    await _each(count, one)
    return held


async def _send_and_hold(host: str, port: int, source: str, request: bytes, held: Held) -> None:
    try:
        reader, writer = await _open(host, port, source)
    except (OSError, asyncio.TimeoutError):
        held.refused += 1
        return
    writer.write(request)
    held.writers.append(writer)
    held.readers.append(reader)


async def _each(count: int, make, at_once: int = 200) -> None:
    """`count` calls of `make()`, at most `at_once` under way (a burst of 8,000 connects at once
    overflows the listen backlog of any server)."""
    gate = asyncio.Semaphore(at_once)

    async def one():
        async with gate:
            await make()

    await asyncio.gather(*(one() for _ in range(count)))


@dataclass
class Honest:
    """An honest shopper's requests: their latencies (seconds) and statuses."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def ok_share(self) -> float:
        """Answered with success or a proper refusal (never a 5xx, a time-out or a dropped connection)."""
        good = [s for s in self.statuses if 200 <= s < 500 and s != 408]
        return len(good) / len(self.statuses) if self.statuses else 0.0


async def honest_requests(url: str, count: int, source: str = HONEST, timeout: float = 10.0,
                          purchase_item: int | None = None) -> Honest:
    """`count` requests of a shopper at `source`: the page (its cookie), then /healthz and, when
    `purchase_item` is given, purchases of it (refusals count as answers)."""
    import aiohttp

    seen = Honest()
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=10)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # (an IP host)
        headers: dict[str, str] = {}
        for number in range(count):
            target = f"{url}/healthz"
            method = "GET"
            if number == 0:
                target = f"{url}/"
            elif purchase_item is not None and number % 2:
                target, method = f"{url}/api/items/{purchase_item}/purchase", "POST"
            started = time.perf_counter()
            try:
                async with session.request(method, target, headers=headers) as response:
                    page = await response.read()
                    seen.statuses.append(response.status)
                    if number == 0:  # the page carries the form token a purchase sends
                        headers = {FORM_TOKEN_HEADER: form_token_in(page.decode()) or ""}
            except (aiohttp.ClientError, asyncio.TimeoutError):
                seen.statuses.append(0)
            seen.latencies.append(time.perf_counter() - started)
    return seen


async def honest_socket(host: str, port: int, source: str = HONEST, timeout: float = 5.0) -> dict:
    """An honest shopper's socket: opened and a product joined within `timeout`; the join's reply."""
    import websockets.asyncio.client

    async with asyncio.timeout(timeout):
        async with websockets.asyncio.client.connect(
                f"ws://{host}:{port}/product_socket/websocket?vsn=2.0.0", local_addr=(source, 0)) as socket:
            await socket.send(json.dumps(["1", "1", "product:1", "phx_join", {}]))
            return json.loads(await socket.recv())


async def close_code_after(host: str, port: int, frames: list[tuple[bool, int, bytes, int]],
                           source: str = HOSTILE, path: str = "/product_socket/websocket?vsn=2.0.0") -> int | None:
    """A raw WebSocket: the handshake, then `frames` as (fin, opcode, payload, declared length)
    with only the payload given sent (a declared length past it: a frame whose header came and
    whose payload never does); returns the close code the server sends, None when it sends none.
    (A client still sending when the server closes may get a reset that loses the close frame:
    sending nothing after the refused header makes the answer certain.)"""
    reader, writer = await _open(host, port, source)
    writer.write(_upgrade(host, port, path))
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.split()[1] == b"101", head[:200]
        for fin, opcode, payload, declared in frames:
            mask = os.urandom(4)
            header = bytes([(0x80 if fin else 0) | opcode])
            if declared < 126:
                header += bytes([0x80 | declared])
            elif declared < 65536:
                header += bytes([0x80 | 126]) + declared.to_bytes(2, "big")
            else:
                header += bytes([0x80 | 127]) + declared.to_bytes(8, "big")
            writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await writer.drain()
        while True:  # the server's frames (unmasked): the first close frame's code
            first, second = await asyncio.wait_for(reader.readexactly(2), 10)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            body = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return int.from_bytes(body[:2], "big") if len(body) >= 2 else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    finally:
        writer.close()
