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
