"""Fuzzing the doors (Hypothesis): whatever a client sends, the answer is a clear refusal or a
proper reply, never a 500 and never a socket closed by an error of ours (1011).

- The channel hub, in process (a plain Starlette app): hundreds of frames a second.
- The store's HTTP routes, on a real store (`sneakers23 serve`, tests/serve/test_hostile.py runs
  them against its store): purchase paths, checkout bodies, admin actions.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sneakers23.serve import phoenix
from sneakers23.serve.channels import ChannelHub
from tests.serve.test_channels import make_catalog

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)
topics = st.one_of(st.sampled_from(["product:1", "product:2", "phoenix", "cart:x", "product:²", "product:-1",
                                    "product:" + "9" * 12]), st.text(max_size=200))
events = st.one_of(st.sampled_from(["phx_join", "phx_leave", "heartbeat", "add_item"]), st.text(max_size=80))
refs = st.none() | st.text(max_size=40) | st.integers()
frames = st.one_of(
    st.tuples(refs, refs, topics, events, json_values).map(lambda parts: json.dumps(list(parts))),
    json_values.map(json.dumps),
    st.text(max_size=300),
)

ANSWERED_CLOSES = {phoenix.CLOSE_INVALID, phoenix.CLOSE_POLICY, phoenix.CLOSE_TOO_BIG}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frames_get_replies_or_a_protocol_close_never_an_error(messages):
    hub = ChannelHub(make_catalog(released=True))
    app = Starlette(routes=[WebSocketRoute("/product_socket/websocket", hub.serve)])
    with TestClient(app) as client:
        with client.websocket_connect("/product_socket/websocket?vsn=2.0.0") as ws:
            try:
                for text in messages:
                    ws.send_text(text)
                    reply = json.loads(ws.receive_text())
                    assert isinstance(reply, list) and len(reply) == 5
                    assert len(json.dumps(reply[:3], ensure_ascii=False)) < 400  # what it echoes is short (in characters)
            except WebSocketDisconnect as closed:
                assert closed.code in ANSWERED_CLOSES, closed
        # The hub still serves the next socket.
        with client.websocket_connect("/product_socket/websocket?vsn=2.0.0") as ws:
            ws.send_text(json.dumps(["1", "1", "product:1", "phx_join", {}]))
            assert json.loads(ws.receive_text())[4]["status"] == "ok"
