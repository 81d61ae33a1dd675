"""A rehearsal shopper's socket does what a tab's phoenix.js does when the store closes it under a
join: it connects again and joins again, and the join's answer reaches its shopper. (Before, its
joins after a reconnect waited for replies that nothing read, and the shopper gave up after 30 s.)"""

from __future__ import annotations

import asyncio
import json

import pytest

from sneakers23.jobs import shopper_socket
from sneakers23.jobs.shopper_socket import Socket
from tests.support import aio  # (asyncio.run in a thread: a Chromium test of the worker keeps a loop here)


class Noting:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def note(self, kind: str, step: str, started, outcome: str) -> None:
        self.rows.append((kind, step, outcome))

    def pushed(self, topic: str, event: str, payload: dict) -> None:
        pass


async def a_join_closed_under_it(refused_rejoins: int = 0) -> tuple[Noting, list[dict], int, bool]:
    import aiohttp
    from aiohttp import web

    connections = 0
    refusals = refused_rejoins

    async def socket(request):
        nonlocal connections, refusals
        connections += 1
        first = connections == 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            join_ref, ref, topic, event, _payload = json.loads(message.data)
            if event == "phx_join" and first:
                await ws.close()  # (the store closes it under the join: a restart, a node lost)
            elif event == "phx_join" and refusals:  # (a store starting again, for a moment)
                refusals -= 1
                await ws.send_str(json.dumps([join_ref, ref, topic, "phx_reply",
                                              {"status": "error", "response": {"reason": "unavailable"}}]))
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
            for _ in range(500):  # (until the reconnect's join is answered, or given up, 5 s at most)
                if answers or tab.lost.is_set():
                    break
                await asyncio.sleep(0.01)
            lost = tab.lost.is_set()
            await tab.close()
    finally:
        await runner.cleanup()
    return shopper, answers, connections, lost


def test_a_join_the_store_closes_the_socket_under_is_made_again_once_connected_again():
    shopper, answers, connections, lost = aio.run(a_join_closed_under_it())
    assert connections == 2, shopper.rows
    assert answers == [{"items": [], "connection": 2}], shopper.rows  # (the second connection's answer, once)
    joins = [outcome for kind, step, outcome in shopper.rows if step == "join"]
    assert joins == ["socket closed", "ok"], shopper.rows
    assert ("visit", "socket_closed", "by the store") in shopper.rows and not lost


@pytest.mark.parametrize("refused, joined", [(2, True), (len(shopper_socket.REJOIN_AFTER_S) + 1, False)])
def test_a_rejoin_refused_for_a_moment_is_asked_again_and_given_up_after_the_last_pause(monkeypatch, refused, joined):
    monkeypatch.setattr(shopper_socket, "REJOIN_AFTER_S", (0.01,) * len(shopper_socket.REJOIN_AFTER_S))
    shopper, answers, _connections, lost = aio.run(a_join_closed_under_it(refused_rejoins=refused))
    joins = [outcome for kind, step, outcome in shopper.rows if step == "join"]
    if joined:
        assert joins == ["socket closed", "unavailable", "unavailable", "ok"] and len(answers) == 1 and not lost
    else:
        assert joins == ["socket closed", *["unavailable"] * refused] and answers == [] and lost
        assert ("visit", "error", "reconnect: Refused") in shopper.rows
