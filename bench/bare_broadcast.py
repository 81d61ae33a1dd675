"""The baseline for the fan-out benchmark: a bare `websockets` server broadcasting one frame to
every connected socket when a trigger message arrives. No Ray, no Phoenix, no inventory."""

import asyncio
import sys

import websockets

clients: set = set()


async def handler(websocket):
    if websocket.request.path == "/trigger":
        async for message in websocket:  # each message: the frame to broadcast to every client
            websockets.broadcast(clients, message)
        return
    clients.add(websocket)
    try:
        await websocket.wait_closed()
    finally:
        clients.discard(websocket)


async def main(port: int) -> None:
    async with websockets.serve(handler, "127.0.0.1", port, backlog=4096):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    import resource
    import signal

    # Stopped by Ctrl-C (bench/servers.py), even when started from a shell's background job, which
    # leaves SIGINT ignored in its children (asyncio.run then keeps it ignored: two minutes lost).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass  # (stopped, as asked)
