"""A load-generator process for the fan-out benchmark: holds sockets, notes when each push arrives.

Reads commands on stdin (JSON lines), answers on stdout:
  {"open": URL, "count": N, "join": TOPIC|null, "cookies": [HEADER, ...]|null, "log": false}
      -> {"opened": N, "joined": N}  (socket n sends cookies[n] as its Cookie header; with "log",
      every push each socket gets is noted, with the time, for "pushes")
  {"collect": MATCH, "expect": N, "timeout": S}  -> {"arrivals": [t, ...], "cpu_s": S}
  {"pushes": true}  -> {"pushes": [[[t, event, payload], ...] per socket], "cpu_s": S} (since the last)
"""

import asyncio
import json
import resource
import sys
import time

import websockets


class Clients:
    def __init__(self):
        self.sockets = []
        self.arrivals: dict[str, list[float]] = {}
        self.closed = 0
        self.joined = 0
        self.pushes: list[list] | None = None  # per socket, when noting every push
        self.cpu_at = time.process_time()

    async def open(self, url: str, count: int, join: str | None, cookies: list[str] | None = None,
                   log: bool = False) -> dict:
        semaphore = asyncio.Semaphore(64)
        if log:
            self.pushes = [[] for _ in range(count)]

        async def one(n):
            async with semaphore:
                headers = {"Cookie": cookies[n]} if cookies else None
                ws = await websockets.connect(url, max_queue=None, open_timeout=120, ping_interval=None,
                                              additional_headers=headers)
                if join:
                    await ws.send(json.dumps([str(n), str(n), join, "phx_join", {}]))
                    reply = json.loads(await ws.recv())  # the join reply
                    self.joined += reply[3] == "phx_reply" and reply[4].get("status") == "ok"
                self.sockets.append(ws)
                asyncio.get_running_loop().create_task(self.read(ws, n))
                if join:  # as the Phoenix client does: the server closes sockets silent for 60 s
                    asyncio.get_running_loop().create_task(self.heartbeat(ws))

        # A path that cannot hold this many sockets is reported (how many opened), not a crash.
        await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
        return {"opened": len(self.sockets), "joined": self.joined}

    def take_pushes(self) -> dict:
        pushes, self.pushes = self.pushes, [[] for _ in self.pushes]
        cpu, self.cpu_at = time.process_time() - self.cpu_at, time.process_time()
        return {"pushes": pushes, "cpu_s": cpu}

    async def heartbeat(self, ws):
        ref = 0
        while True:
            await asyncio.sleep(25)
            ref += 1
            try:
                await ws.send(json.dumps([None, f"h{ref}", "phoenix", "heartbeat", {}]))
            except websockets.ConnectionClosed:
                return

    async def read(self, ws, n: int):
        try:
            await self._read(ws, n)
        except websockets.ConnectionClosed:
            self.closed += 1  # counted by the missing arrivals

    async def _read(self, ws, n: int):
        async for message in ws:
            now = time.time()
            # The payload names what it is about; arrivals are kept by that key.
            frame = json.loads(message)
            if frame[3] == "phx_reply":
                continue  # heartbeat replies
            if self.pushes is not None:
                self.pushes[n].append([now, frame[3], frame[4]])
                continue
            key = json.dumps(frame[4], sort_keys=True)
            self.arrivals.setdefault(key, []).append(now)


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
            cpu = time.process_time()
            deadline = time.monotonic() + command["timeout"]
            if clients.closed:
                deadline = min(deadline, time.monotonic() + 10)  # some will never get it
            key = json.dumps(command["collect"], sort_keys=True)
            while len(clients.arrivals.get(key, [])) < command["expect"] and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            answer = {"arrivals": clients.arrivals.pop(key, []), "cpu_s": time.process_time() - cpu}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
