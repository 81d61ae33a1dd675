"""The baseline of the cart benchmark: a bare `websockets` server speaking just enough of the
Phoenix protocol for bench/cart_tabs.py. A tab joins `cart:{id}`; an `add_item` is answered at once
and relayed as a `cart` push to the shopper's other tabs. No Ray, no database, no checks: what is
left of the tab-to-tab time is the load generator's and the loopback's own.

    python -m bench.bare_cart_relay PORT
"""

import asyncio
import json
import sys

import websockets

tabs: dict[str, set] = {}


async def handler(websocket):
    joined: list[str] = []
    version = 0
    try:
        async for message in websocket:
            join_ref, ref, topic, event, payload = json.loads(message)
            if event == "phx_join":
                tabs.setdefault(topic, set()).add(websocket)
                joined.append(topic)
                reply = {"version": 0, "items": []}
            elif event == "add_item" or event == "remove_item":
                version += 1
                reply = {"version": version, "items": [payload["item_id"]] if event == "add_item" else []}
                push = json.dumps([None, None, topic, "cart", reply])
                for other in tabs.get(topic, ()):
                    if other is not websocket:
                        await other.send(push)
            else:
                reply = {}
            await websocket.send(json.dumps([join_ref, ref, topic, "phx_reply", {"status": "ok", "response": reply}]))
    finally:
        for topic in joined:
            tabs.get(topic, set()).discard(websocket)


async def main(port: int) -> None:
    async with websockets.serve(handler, "127.0.0.1", port, backlog=4096):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
