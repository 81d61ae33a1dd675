"""What a push costs the replica to send: the channels' own `Connection.send` (serve/channels.py), on
a uvicorn with the replica's WebSocket protocol (serve/guards.py `replica_websocket`) and Serve's
request-id wrapper around the app, as Ray's direct ingress serves a replica.

Two ways, alternating, on the same SOCKETS sockets (held by a load generator of the fan-out
benchmarks, bench/fanout_clients.py):
- `asgi`: through Starlette's `send_text`, Serve's wrapper and uvicorn's send (the way before);
- `direct`: written by the server's protocol itself (`send_now`), as the store now sends.
The server's CPU (its process's, over the sends alone) divided by the pushes sent. Each push is a
queue position's frame of its own (a different number each), as the queue's tabs get.

    .venv/bin/python -m bench.ws_send_cost [--sockets 5000] [--rounds 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from bench.channel_fanout import LoadGenerator
from bench.servers import Process
from harness.ports import free_port
from harness.waiting import wait_for

FRAME = [None, None, "queue:2", "place", {"stage": "queue", "position": 1234, "ahead": 1233, "wait_s": 600,
                                          "sold_out": False, "entry": "0123456789abcdef"}]
WAYS = ("asgi", "direct")


def serve(port: int) -> None:
    """The server: sockets at `/`, and `/push?way=W&rounds=R`, which sends R rounds to every socket
    (a turn of the loop between rounds, for the client to read) and answers the CPU a push."""
    import uvicorn
    from ray.serve._private.http_util import RequestIdMiddleware
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute

    from sneakers23.serve.channels import Connection
    from sneakers23.serve.guards import replica_websocket

    connections: list[Connection] = []

    async def socket(websocket) -> None:
        await websocket.accept()
        connection = Connection(websocket)
        connections.append(connection)
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            connections.remove(connection)

    async def push(request):
        way, rounds = request.query_params["way"], int(request.query_params["rounds"])
        direct = {connection: connection._send_now for connection in connections}
        cpu = 0.0
        for number in range(rounds):
            started = time.process_time()
            for index, connection in enumerate(connections):
                connection._send_now = direct[connection] if way == "direct" else None
                FRAME[4]["position"] = number * 100_000 + index
                connection.send(json.dumps(FRAME))
            cpu += time.process_time() - started
            while any(connection.sending for connection in connections):  # (none, unless a client lags)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
        for connection in connections:
            connection._send_now = direct[connection]
        sent = rounds * len(connections)
        return JSONResponse({"way": way, "pushes": sent, "cpu_us": cpu / max(sent, 1) * 1e6,
                             "direct": sum(1 for send in direct.values() if send is not None)})

    app = RequestIdMiddleware(Starlette(routes=[WebSocketRoute("/", socket), Route("/push", push)]))
    uvicorn.run(app, host="127.0.0.1", port=port, ws=replica_websocket(5.0), ws_per_message_deflate=False,
                ws_ping_interval=None, log_level="warning", backlog=4096)


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = Process([sys.executable, "-m", "bench.ws_send_cost", "--serve", str(port)], None, "send-cost-server")
    clients = None
    try:
        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/push?way=direct&rounds=0", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=30, interval=0.2, what="the server")
        clients = LoadGenerator()
        clients.send({"open": f"ws://127.0.0.1:{port}/", "count": args.sockets, "join": None})
        opened = clients.answer()["opened"]
        assert opened == args.sockets, f"{opened} of {args.sockets} sockets opened"
        results: dict[str, list[float]] = {}
        for run in range(args.runs):
            for way in WAYS if run % 2 == 0 else reversed(WAYS):  # (neither always first)
                said = httpx.get(f"http://127.0.0.1:{port}/push?way={way}&rounds={args.rounds}", timeout=300).json()
                assert said["direct"] == args.sockets, said  # (every socket could be written directly)
                results.setdefault(way, []).append(said["cpu_us"])
        print(f"a push sent, {args.sockets} sockets x {args.rounds} rounds, the server's CPU µs (runs):")
        for way, runs in results.items():
            print(f"  {way:7} " + " / ".join(f"{r:.1f}" for r in runs))
        print("  direct / asgi: " + " / ".join(f"{d / a:.2f}" for d, a in zip(results["direct"], results["asgi"])))
    finally:
        if clients is not None:
            clients.stop()
        server.stop()


if __name__ == "__main__":
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main()
