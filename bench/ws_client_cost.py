"""What a WebSocket client costs to read a frame: the load generators' budget (bench/fanout_clients.py).

A bare `websockets` server (bench/bare_broadcast.py) broadcasts FRAMES frames to SOCKETS sockets
held by one client process; the client's CPU over the reads, a frame, for each client library:
`websockets` (the tests' client), aiohttp's and picows's (the generators'). Each read is timed and
parsed as the generators did before picows (`time.time()`, `json.loads`).

    .venv/bin/python -m bench.ws_client_cost [--sockets 5000] [--frames 2] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import Process
from harness.ports import free_port
from harness.waiting import wait_for

FRAME = json.dumps([None, None, "queue:2", "place", {"stage": "queue", "position": 1234, "ahead": 1233,
                                                     "wait_s": 600, "sold_out": False, "entry": "0123456789abcdef"}])


async def read_with(library: str, url: str, sockets: int, frames: int) -> float:
    """CPU seconds a frame, over `frames` broadcasts to `sockets` sockets. (The sockets are left to
    the end of the process, which runs one library only.)"""
    loop = asyncio.get_running_loop()
    left, done = [sockets * frames], loop.create_future()

    def got(message: str) -> None:
        time.time()  # (as a generator notes each frame's arrival)
        json.loads(message)
        left[0] -= 1
        if left[0] == 0:
            done.set_result(None)

    async def read(ws, text=lambda message: message) -> None:
        async for message in ws:
            got(text(message))

    if library == "websockets":
        import websockets

        opened = await asyncio.gather(*(websockets.connect(url, max_queue=None, ping_interval=None) for _ in range(sockets)))
        held = [(ws, loop.create_task(read(ws))) for ws in opened]
    elif library == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        opened = await asyncio.gather(*(session.ws_connect(url, max_msg_size=0) for _ in range(sockets)))
        held = [(ws, loop.create_task(read(ws, lambda message: message.data))) for ws in opened]
    else:
        import picows

        class Reader(picows.WSListener):
            def on_ws_frame(self, transport, frame):
                if frame.msg_type == picows.WSMsgType.TEXT:
                    got(frame.get_payload_as_utf8_text())

        held = await asyncio.gather(*(picows.ws_connect(Reader, url) for _ in range(sockets)))
    import websockets

    # (`held`: each socket, with its reading task, to the end: a task no one holds may go)
    async with websockets.connect(url + "trigger") as trigger:
        cpu = time.process_time()
        for _ in range(frames):
            await trigger.send(FRAME)
        await asyncio.wait_for(done, 120)
        cpu = time.process_time() - cpu
    return cpu / (len(held) * frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    server = Process([sys.executable, "-m", "bench.bare_broadcast", str(port)], None, "bare-broadcast")
    try:
        wait_for(lambda: "ready" in Path(server.log_path).read_text(), timeout=30, interval=0.05,
                 what="the bare server")
        results: dict[str, list[float]] = {}
        for _run in range(args.runs):
            for library in ("websockets", "aiohttp", "picows"):
                # (a process of its own each: what one library leaves behind costs the next nothing)
                answer = subprocess.run([sys.executable, "-m", "bench.ws_client_cost", "--one", library, str(port),
                                         str(args.sockets), str(args.frames)], capture_output=True, text=True,
                                        check=True, timeout=300)
                results.setdefault(library, []).append(float(answer.stdout.strip()))
        print(f"a frame read, {args.sockets} sockets x {args.frames} frames, CPU µs (runs):")
        for library, runs in results.items():
            print(f"  {library:11} " + " / ".join(f"{r * 1e6:.1f}" for r in runs))
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _flag, library, port, sockets, frames = sys.argv[1:]
        print(asyncio.run(read_with(library, f"ws://127.0.0.1:{port}/", int(sockets), int(frames))))
    else:
        main()
