"""The presence benchmark's tabs and dashboard, in one process (one clock).

Reads one JSON line on stdin:
  {"channel_urls": [...], "admin_url": URL or null, "tabs": [[shopper, token], ...],
   "extra": [[shopper, token], ...], "rate": R, "seconds": S, "hold_s": H}
Opens every tab (round robin over the channel replicas' URLs; each its own shopper, joined to its
cart channel with the page "/"), and the dashboard's socket when there is one. Prints a line
{"phase": "hold"} once every tab is open (and shown on the dashboard), {"phase": "churn"} after
H seconds, and {"phase": "end"} when the churn is over: R times a second for S seconds, the oldest
tab closes and a new one (from `extra`) opens. Then one JSON line of figures:
  {"opened", "all_shown_s", "join_ms": [...], "leave_ms": [...], "reply_ms": [...], "missed", "cpu_s"}
join_ms and leave_ms run from the tab's join sent (or its socket's close) to the dashboard's
presence diff naming that shopper; reply_ms from the same join to its own reply (the baseline).
"""

import asyncio
import gc
import json
import sys
import time

import websockets

OPENING_AT_ONCE = 200


class Dashboard:
    def __init__(self):
        self.joined: dict[str, float] = {}
        self.left: dict[str, float] = {}
        self.online: set[str] = set()
        self.arrivals: list[float] = []  # every diff's arrival
        self.waiters: list[tuple[int, asyncio.Future]] = []

    async def follow(self, url: str):
        ws = await websockets.connect(url, max_queue=None, open_timeout=60, ping_interval=None)
        await ws.send(json.dumps(["1", "1", "admin:dashboard", "phx_join", {}]))
        asyncio.get_running_loop().create_task(self._beat(ws))
        async for message in ws:
            now = time.perf_counter()
            _join_ref, _ref, _topic, event, payload = json.loads(message)
            if event == "presence_state":
                for key in payload:
                    self.joined.setdefault(key, now)
                self.online = set(payload)
            elif event == "presence_diff":
                self.arrivals.append(now)
                for key in payload["joins"]:
                    self.joined.setdefault(key, now)
                    self.online.add(key)
                for key in payload["leaves"]:
                    self.left.setdefault(key, now)
                    self.online.discard(key)
            for count, future in list(self.waiters):
                if len(self.online) >= count and not future.done():
                    future.set_result(now)

    @staticmethod
    async def _beat(ws):
        while True:
            await asyncio.sleep(20)
            await ws.send(json.dumps([None, "hb", "phoenix", "heartbeat", {}]))

    def shows(self, count: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append((count, future))
        return future


class Tab:
    def __init__(self, ws, shopper: str):
        self.ws = ws
        self.shopper = shopper
        self.replied = asyncio.get_running_loop().create_future()

    async def read(self):
        try:
            async for message in self.ws:
                _join_ref, ref, _topic, event, _payload = json.loads(message)
                if event == "phx_reply" and ref == "1" and not self.replied.done():
                    self.replied.set_result(time.perf_counter())
        except websockets.ConnectionClosed:
            pass


async def open_tab(url: str, shopper: str, token: str) -> tuple[Tab, float]:
    ws = await websockets.connect(url, max_queue=None, open_timeout=120, ping_interval=None)
    tab = Tab(ws, shopper)
    asyncio.get_running_loop().create_task(tab.read())
    sent = time.perf_counter()
    await ws.send(json.dumps(["1", "1", f"cart:{shopper}", "phx_join", {"token": token, "page": "/"}]))
    return tab, sent


HEARTBEAT_S = 25.0


async def heartbeats(tabs: list[Tab]):
    """Each tab's heartbeat every HEARTBEAT_S, spread over the interval as real tabs' are (they
    opened at different moments): never all at once."""
    while True:
        for tab in list(tabs):
            await asyncio.sleep(HEARTBEAT_S / max(1, len(tabs)))
            try:
                await tab.ws.send(json.dumps([None, "hb", "phoenix", "heartbeat", {}]))
            except websockets.ConnectionClosed:
                pass


def say(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def main() -> None:
    spec = json.loads(sys.stdin.readline())
    cpu = time.process_time()
    urls = spec["channel_urls"]
    dashboard = Dashboard() if spec.get("admin_url") else None
    if dashboard is not None:
        asyncio.get_running_loop().create_task(dashboard.follow(spec["admin_url"]))
    semaphore = asyncio.Semaphore(OPENING_AT_ONCE)

    async def opened(index: int, shopper: str, token: str) -> tuple[Tab, float]:
        async with semaphore:
            tab, sent = await open_tab(urls[index % len(urls)], shopper, token)
            await tab.replied
            return tab, sent

    started = time.perf_counter()
    tabs = [tab for tab, _sent in await asyncio.gather(*(opened(i, s, t) for i, (s, t) in enumerate(spec["tabs"])))]
    all_shown_s = None
    if dashboard is not None:
        await asyncio.wait_for(dashboard.shows(len(tabs)), 120)
        all_shown_s = time.perf_counter() - started
    asyncio.get_running_loop().create_task(heartbeats(tabs))
    # The generator's own pauses must not count as the store's: a full collection over thousands of
    # sockets' objects stalls this loop for hundreds of milliseconds, so none runs while measuring.
    gc.freeze()
    gc.disable()
    say({"phase": "hold"})
    await asyncio.sleep(spec["hold_s"])
    say({"phase": "churn"})

    join_sent: dict[str, float] = {}
    leave_sent: dict[str, float] = {}
    reply_ms: list[float] = []
    extra = list(spec["extra"])
    interval = 1.0 / spec["rate"]
    next_at = churn_started = time.perf_counter()
    end = next_at + spec["seconds"]
    pending = set()

    async def replace(old: Tab, shopper: str, token: str, index: int):
        leave_sent[old.shopper] = time.perf_counter()
        await old.ws.close()
        tab, sent = await open_tab(urls[index % len(urls)], shopper, token)
        join_sent[shopper] = sent
        reply_ms.append((await tab.replied - sent) * 1000)
        tabs.append(tab)

    index = 0
    while time.perf_counter() < end and extra:
        shopper, token = extra.pop()
        old = tabs.pop(0)
        task = asyncio.get_running_loop().create_task(replace(old, shopper, token, index))
        pending.add(task)
        task.add_done_callback(pending.discard)
        index += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*pending)
    say({"phase": "end"})
    deadline = time.perf_counter() + 10
    while dashboard is not None and time.perf_counter() < deadline and (
            any(s not in dashboard.joined for s in join_sent) or any(s not in dashboard.left for s in leave_sent)):
        await asyncio.sleep(0.05)
    joined = dashboard.joined if dashboard else {}
    left = dashboard.left if dashboard else {}
    say({"opened": len(spec["tabs"]), "all_shown_s": all_shown_s, "changes": len(join_sent) + len(leave_sent),
         "join_ms": [(joined[s] - t) * 1000 for s, t in join_sent.items() if s in joined],
         "leave_ms": [(left[s] - t) * 1000 for s, t in leave_sent.items() if s in left],
         "slowest_joins": sorted(([round((joined[s] - t) * 1000), round(t - churn_started, 2)] for s, t in join_sent.items()
                                  if s in joined), reverse=True)[:5],
         "widest_gaps": sorted(([round((b - a) * 1000), round(a - churn_started, 2)] for a, b in
                                zip(dashboard.arrivals, dashboard.arrivals[1:]) if a > churn_started), reverse=True)[:5]
                        if dashboard else [],
         "churn_started_wall": time.time() - (time.perf_counter() - churn_started),
         "slowest": sorted(([round((left[s] - t) * 1000), round(t - churn_started, 2)] for s, t in leave_sent.items()
                            if s in left), reverse=True)[:10],
         "reply_ms": reply_ms,
         "missed": (sum(s not in joined for s in join_sent) + sum(s not in left for s in leave_sent)) if dashboard else None,
         "cpu_s": time.process_time() - cpu})
    for tab in tabs:
        await tab.ws.close()


if __name__ == "__main__":
    asyncio.run(main())
