"""The cart benchmark's tabs: SHOPPERS shoppers holding two tabs each (two sockets), every tab
joined to its shopper's cart channel. Each shopper's first tab adds a size and later removes it; the
time until the shopper's second tab gets the `cart` push of that version is the figure.

Reads one JSON line on stdin: {"url", "shoppers": [[id, token], ...], "item_id", "rate"} and prints
one JSON line: {"opened", "changes", "seen", "tab_to_tab_ms": [...], "reply_ms": [...], "cpu_s"}.
Optionally: "urls": [the first tab's, the second tab's] (two nodes: two devices of one account), a
third field per shopper, the Cookie header its sockets send (an account's session), and a fourth and
fifth, the second tab's own token and Cookie header (a second device: a session of its own; both
or neither).
"""

import asyncio
import json
import resource
import sys
import time

import websockets


class Tab:
    def __init__(self, ws, topic: str):
        self.ws = ws
        self.topic = topic
        self.replies: dict[str, asyncio.Future] = {}
        self.pushes: dict[int, float] = {}  # cart version -> when its push arrived
        self.waiting: dict[int, asyncio.Future] = {}
        self.ref = 0

    async def read(self):
        async for message in self.ws:
            now = time.perf_counter()
            _join_ref, ref, _topic, event, payload = json.loads(message)
            if event == "phx_reply" and ref in self.replies:
                self.replies.pop(ref).set_result((now, payload))
            elif event == "cart":
                version = payload["version"]
                self.pushes.setdefault(version, now)
                if version in self.waiting:
                    self.waiting.pop(version).set_result(now)

    async def send(self, event: str, payload: dict):
        self.ref += 1
        ref = str(self.ref)
        self.replies[ref] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(["1", ref, self.topic, event, payload]))
        return await self.replies[ref]

    def push_of(self, version: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if version in self.pushes:
            future.set_result(self.pushes[version])
        else:
            self.waiting[version] = future
        return future


async def open_tab(url: str, shopper_id: str, token: str, cookie: str | None, semaphore) -> Tab:
    async with semaphore:
        ws = await websockets.connect(url, max_queue=None, open_timeout=120, ping_interval=None,
                                      additional_headers={"Cookie": cookie} if cookie else None)
        tab = Tab(ws, f"cart:{shopper_id}")
        asyncio.get_running_loop().create_task(tab.read())
        _at, joined = await tab.send("phx_join", {"token": token})
        if joined["status"] != "ok":
            raise RuntimeError(f"join refused: {joined}")
        return tab


async def change(first: Tab, second: Tab, event: str, item_id: int, results: dict) -> None:
    sent = time.perf_counter()
    try:
        replied, reply = await asyncio.wait_for(first.send(event, {"item_id": item_id}), 30)
        if reply["status"] != "ok":
            results["errors"].append(reply["response"])
            return
        results["reply_ms"].append((replied - sent) * 1000)
        seen = await asyncio.wait_for(second.push_of(reply["response"]["version"]), 30)
        results["tab_to_tab_ms"].append((seen - sent) * 1000)
    except asyncio.TimeoutError:
        results["lost"] += 1


async def main() -> None:
    command = json.loads(sys.stdin.readline())
    semaphore = asyncio.Semaphore(64)
    first_url, second_url = command.get("urls") or (command["url"], command["url"])
    def tabs_of(shopper: list) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        """(token, cookie) of the shopper's first tab and of its second."""
        first = (shopper[1], shopper[2] if len(shopper) > 2 else None)
        return first, (shopper[3], shopper[4]) if len(shopper) > 4 else first

    pairs = await asyncio.gather(*(
        asyncio.gather(open_tab(first_url, shopper[0], *tabs_of(shopper)[0], semaphore=semaphore),
                       open_tab(second_url, shopper[0], *tabs_of(shopper)[1], semaphore=semaphore))
        for shopper in command["shoppers"]))
    results = {"reply_ms": [], "tab_to_tab_ms": [], "errors": [], "lost": 0}
    cpu = time.process_time()
    gap = 1 / command["rate"]
    started = time.perf_counter()
    tasks = []
    for n, event in enumerate(["add_item", "remove_item"] * 1):
        for i, (first, second) in enumerate(pairs):
            # paced: one change every `gap` seconds, all shoppers' adds, then all their removes
            due = started + (n * len(pairs) + i) * gap
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.get_running_loop().create_task(change(first, second, event, command["item_id"], results)))
        await asyncio.gather(*tasks)
    results.update(opened=2 * len(pairs), changes=len(tasks), seconds=time.perf_counter() - started,
                   cpu_s=time.process_time() - cpu)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
