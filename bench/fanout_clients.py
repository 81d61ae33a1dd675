"""A load-generator process for the fan-out benchmark: holds sockets, notes when each push arrives.

Reads commands on stdin (JSON lines), answers on stdout:
  {"open": URL, "count": N, "join": TOPIC|null, "cookies": [HEADER, ...]|null, "log": false}
      -> {"opened": N, "joined": N}  (socket n sends cookies[n] as its Cookie header; with "log",
      every push each socket gets is noted, with the time, for "pushes")
  {"collect": MATCH, "expect": N, "timeout": S}  -> {"arrivals": [t, ...], "cpu_s": S}
  {"pushes": true}  -> {"pushes": [[[t, event, payload], ...] per socket], "cpu_s": S} (since the last)

The sockets are picows's: a frame is a callback on the socket's protocol, with no task or future
per socket, and its framing is compiled. A frame read costs 14-17 µs of CPU here, against 62-73 µs
with `websockets` (bench/ws_client_cost.py): at the release of a queue of 10,000 tabs the
generators read 10,000 frames in the second the store has, on the store's two cores (with
`websockets` they were still reading 0.4 s after the store's last send, docs/performance.md). Each
frame is kept as it came, with its time, and parsed only when asked for.
"""

import asyncio
import json
import resource
import sys
import time

import picows
from picows import WSMsgType

HEARTBEAT_S = 25  # as the Phoenix client does: the server closes sockets silent for 60 s


class Tab(picows.WSListener):
    """One socket: its frames, whole (a fragmented one put together), handed to the clients."""

    def __init__(self, clients: "Clients", n: int):
        self.clients, self.n = clients, n
        self.transport: picows.WSTransport | None = None
        self.parts: list[bytes] = []
        self.reply: asyncio.Future | None = None  # its join's reply, while it is awaited

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind not in (WSMsgType.TEXT, WSMsgType.CONTINUATION):
            return  # (pings are answered by picows itself)
        if not frame.fin:
            self.parts.append(frame.get_payload_as_bytes())
            return
        if self.parts:
            message = b"".join([*self.parts, frame.get_payload_as_bytes()]).decode()
            self.parts = []
        else:
            message = frame.get_payload_as_utf8_text()
        now = time.time()
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(message)
        else:
            self.clients.received(self.n, now, message)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.clients.closed += 1  # counted by the missing arrivals
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("closed before its join's reply"))

    def send(self, frame: list) -> None:
        if not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, json.dumps(frame).encode())


class Clients:
    def __init__(self):
        self.tabs: list[Tab] = []
        self.arrivals: dict[str, list[float]] = {}
        self.frames: list[tuple[float, str]] = []  # (when, frame), not parsed yet: for "collect"
        self.closed = 0
        self.joined = 0
        self.pushes: list[list] | None = None  # per socket, (when, frame) not parsed yet, when noting every push
        self.cpu_at = time.process_time()

    async def open(self, url: str, count: int, join: str | None, cookies: list[str] | None = None,
                   log: bool = False) -> dict:
        semaphore = asyncio.Semaphore(64)
        loop = asyncio.get_running_loop()
        if log:
            self.pushes = [[] for _ in range(count)]

        async def one(n):
            async with semaphore:
                headers = {"Cookie": cookies[n]} if cookies else None
                _transport, tab = await picows.ws_connect(lambda: Tab(self, n), url, extra_headers=headers,
                                                          websocket_handshake_timeout=120, max_frame_size=1 << 24)
                if join:
                    tab.reply = loop.create_future()
                    tab.send([str(n), str(n), join, "phx_join", {}])
                    reply = json.loads(await tab.reply)
                    self.joined += reply[3] == "phx_reply" and reply[4].get("status") == "ok"
                self.tabs.append(tab)
                if join:
                    loop.call_later(HEARTBEAT_S, self.heartbeat, tab, 1)

        # A path that cannot hold this many sockets is reported (how many opened), not a crash.
        failed = [e for e in await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
                  if isinstance(e, BaseException)]
        if failed:  # (what the first failure was, on the generator's stderr)
            print(f"{len(failed)} sockets failed, the first: {failed[0]!r}", file=sys.stderr, flush=True)
        return {"opened": len(self.tabs), "joined": self.joined}

    def heartbeat(self, tab: Tab, ref: int) -> None:
        if tab.transport.is_disconnected:
            return
        tab.send([None, f"h{ref}", "phoenix", "heartbeat", {}])
        asyncio.get_running_loop().call_later(HEARTBEAT_S, self.heartbeat, tab, ref + 1)

    def received(self, n: int, now: float, message: str) -> None:
        """(Heartbeat replies among them: left out when parsed.)"""
        if self.pushes is not None:
            self.pushes[n].append((now, message))
        else:
            self.frames.append((now, message))

    def take_pushes(self) -> dict:
        pushes, self.pushes = self.pushes, [[] for _ in self.pushes]
        said = [[[now, frame[3], frame[4]] for now, message in log if (frame := json.loads(message))[3] != "phx_reply"]
                for log in pushes]
        cpu, self.cpu_at = time.process_time() - self.cpu_at, time.process_time()
        return {"pushes": said, "cpu_s": cpu}

    def sort_frames(self) -> None:
        """The frames come so far, kept by their payload (which names what they are about)."""
        frames, self.frames = self.frames, []
        for now, message in frames:
            frame = json.loads(message)
            if frame[3] != "phx_reply":
                self.arrivals.setdefault(json.dumps(frame[4], sort_keys=True), []).append(now)

    async def collect(self, match: dict, expect: int, timeout: float) -> dict:
        cpu = time.process_time()
        deadline = time.monotonic() + timeout
        if self.closed:
            deadline = min(deadline, time.monotonic() + 10)  # some will never get it
        key = json.dumps(match, sort_keys=True)
        while True:
            # (frames counted as they come; parsed at the end, or when more came than expected)
            if len(self.frames) + len(self.arrivals.get(key, [])) >= expect:
                self.sort_frames()
                if len(self.arrivals.get(key, [])) >= expect:
                    break
            if time.monotonic() >= deadline:
                self.sort_frames()
                break
            await asyncio.sleep(0.01)
        return {"arrivals": self.arrivals.pop(key, []), "cpu_s": time.process_time() - cpu}


async def main():
    clients = Clients()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)  # (a command may carry thousands of cookies)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if "open" in command:
            answer = await clients.open(command["open"], command["count"], command.get("join"),
                                        command.get("cookies"), command.get("log", False))
        elif "pushes" in command:
            answer = clients.take_pushes()
        else:
            answer = await clients.collect(command["collect"], command["expect"], command["timeout"])
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
