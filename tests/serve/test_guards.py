"""What every replica's server is told (serve/guards.py), checked on the uvicorn configuration Ray's
direct ingress makes. (Each rule at work against real replicas: tests/serve/test_hostile.py.)"""

from __future__ import annotations

import uvicorn

from sneakers23.serve.guards import WS_MAX_MESSAGE_BYTES, tune_replica_server
from sneakers23.settings import Settings


def test_a_replicas_server_caps_messages_sends_no_pings_of_its_own_and_believes_only_the_stores_proxy():
    original = uvicorn.Config
    try:
        tune_replica_server(Settings(trusted_proxies="127.0.0.1"))
        # (as Ray 2.60 makes it, serve/_private/http_util.py: uvicorn.Config looked up at start)
        config = uvicorn.Config(lambda: None, factory=True, host="127.0.0.1", port=0, lifespan="off")
        assert config.ws_max_size == WS_MAX_MESSAGE_BYTES and config.ws_per_message_deflate is False
        # (a dead peer is told by the Phoenix heartbeat: a socket silent for 60 s is closed)
        assert config.ws_ping_interval is None
        assert config.proxy_headers and config.forwarded_allow_ips == ["127.0.0.1"]
    finally:
        uvicorn.Config = original


def test_a_replicas_own_server_writes_pushes_at_once_and_through_asgi_in_order_once_the_socket_is_full():
    """A push is written by the replica's server itself while the socket takes it; once the client
    stops reading and the transport pauses, the rest go through ASGI, queued, in order; a push after
    the client's close neither raises nor is written. An app on another loop than the server's (Serve
    runs user code on a thread of its own unless told otherwise) never writes to the transport
    itself. (A real uvicorn with the replica's protocol.)"""
    import asyncio
    import json
    import threading

    import websockets.sync.client
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    from harness.ports import free_port
    from harness.waiting import wait_for
    from sneakers23.serve.channels import OUTBOX_BYTES, Connection
    from sneakers23.serve.guards import replica_websocket, send_now_of

    chunk = "x" * 16_384
    through_asgi: list[str] = []
    server_side: dict = {}

    async def endpoint(websocket):
        await websocket.accept()
        connection = Connection(websocket)

        async def from_another_loop():
            return send_now_of(websocket)

        elsewhere: list = []
        other = threading.Thread(target=lambda: elsewhere.append(asyncio.run(from_another_loop())))
        other.start()
        other.join()
        server_side["own loop, another loop"] = (send_now_of(websocket) is not None, elsewhere)
        asgi_send = websocket.send_text

        async def counted(text: str) -> None:
            through_asgi.append(text)
            await asgi_send(text)

        websocket.send_text = counted
        await websocket.receive_text()  # (the client's word: it stops reading now)
        for sent, size in enumerate((1, 200, 70_000)):  # (each length of a frame's header)
            connection.send(json.dumps([sent, "x" * size]))
        sent = 3
        while connection.sending is None and sent < 10_000:  # until the socket is full
            connection.send(json.dumps([sent, chunk]))
            sent += 1
        for _ in range(OUTBOX_BYTES // len(chunk) // 2):  # queued behind, well under the cap
            connection.send(json.dumps([sent, chunk]))
            sent += 1
        server_side["sent"] = sent
        await websocket.receive()  # until the client closes
        connection.send(json.dumps([sent, "after the close"]))
        server_side["after_close"] = "sent without raising"

    port = free_port()
    config = uvicorn.Config(Starlette(routes=[WebSocketRoute("/", endpoint)]), host="127.0.0.1", port=port,
                            ws=replica_websocket(5.0), ws_per_message_deflate=False, ws_ping_interval=None,
                            lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, what="uvicorn")
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            ws.send("go")
            wait_for(lambda: "sent" in server_side, timeout=10, what="the pushes, the socket full")
            pushes = [json.loads(ws.recv(timeout=10)) for _ in range(server_side["sent"])]
        assert [number for number, _ in pushes] == list(range(server_side["sent"]))
        assert [len(text) for _, text in pushes[:4]] == [1, 200, 70_000, len(chunk)]
        assert server_side["sent"] > len(through_asgi) > 1, (server_side, len(through_asgi))  # (some of each)
        assert server_side["own loop, another loop"] == (True, [None])
        wait_for(lambda: "after_close" in server_side, timeout=10, what="a push after the close")
    finally:
        server.should_exit = True
        thread.join(10)
