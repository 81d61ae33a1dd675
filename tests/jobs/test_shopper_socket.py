"""A rehearsal shopper's socket does what a tab's phoenix.js does when the store closes it under a
join: it connects again and joins again, and the join's answer reaches its shopper (CI78 lost a
shopper's whole visit to an error raised there)."""

from __future__ import annotations

import asyncio
import json

from sneakers23.jobs.shopper_socket import Socket
from tests.support import aio  # (asyncio.run in a thread: a Chromium test of the worker keeps a loop here)


class Noting:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def note(self, kind: str, step: str, started, outcome: str) -> None:
        self.rows.append((kind, step, outcome))

    def pushed(self, topic: str, event: str, payload: dict) -> None:
        pass


async def a_join_closed_under_it() -> tuple[Noting, list[dict], int]:
    import aiohttp
    from aiohttp import web

    connections = 0

    async def socket(request):
        nonlocal connections
        connections += 1
        first = connections == 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            join_ref, ref, topic, event, _payload = json.loads(message.data)
            if event == "phx_join" and first:
                await ws.close()  # (the store closes it under the join: a restart, a node lost)
            elif event == "phx_join":
                await ws.send_str(json.dumps([join_ref, ref, topic, "phx_reply",
                                              {"status": "ok", "response": {"items": [], "connection": connections}}]))
        return ws

    app = web.Application()
    app.router.add_get("/product_socket/websocket", socket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    shopper, answers = Noting(), []
    try:
        async with aiohttp.ClientSession() as session:
            tab = Socket(shopper, session, f"http://127.0.0.1:{port}", "")
            await tab.open()
            await tab.join("product:2", {}, "join", answers.append)  # (returns: the socket joins again)
            for _ in range(500):  # (until the reconnect's join is answered, 5 s at most)
                if answers:
                    break
                await asyncio.sleep(0.01)
            await tab.close()
    finally:
        await runner.cleanup()
    return shopper, answers, connections


def test_a_join_the_store_closes_the_socket_under_is_made_again_once_connected_again():
    shopper, answers, connections = aio.run(a_join_closed_under_it())
    assert connections == 2, shopper.rows
    assert answers == [{"items": [], "connection": 2}], shopper.rows  # (the second connection's answer, once)
    joins = [outcome for kind, step, outcome in shopper.rows if step == "join"]
    assert joins == ["socket closed", "ok"], shopper.rows
    assert ("visit", "socket_closed", "by the store") in shopper.rows
