"""The Phoenix Channels wire protocol, version 2.0.0 (JSON).

Every frame is `[join_ref, ref, topic, event, payload]`. Clients join topics with `phx_join`, leave
with `phx_leave` and keep the socket alive with `heartbeat` on the topic `phoenix`; every message
with a ref gets a `phx_reply` `{"status": "ok" | "error", "response": …}`. Server pushes carry null
refs. This module only reads and writes frames; what the channels do lives in channels.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

VERSION = "2.0.0"
MAX_FRAME_CHARS = 64 * 1024
# What a reply echoes back (refs, topic) is short: a reply never costs much more than its message.
MAX_REF_CHARS = 32
MAX_TOPIC_CHARS = 128
MAX_EVENT_CHARS = 64

JOIN, LEAVE, REPLY, HEARTBEAT, CLOSE = "phx_join", "phx_leave", "phx_reply", "heartbeat", "phx_close"
SOCKET_TOPIC = "phoenix"

# WebSocket close codes for frames that cannot be answered (they carry no usable ref).
CLOSE_INVALID = 1007  # not JSON, or not a Phoenix frame
CLOSE_POLICY = 1008  # too many messages, or a consumer too slow to keep up
CLOSE_TOO_BIG = 1009


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


def decode(text: str) -> Message:
    if len(text) > MAX_FRAME_CHARS:
        raise ProtocolError(CLOSE_TOO_BIG, f"frame over {MAX_FRAME_CHARS} characters")
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):  # (RecursionError: nested too deep)
        raise ProtocolError(CLOSE_INVALID, "frame is not JSON") from None
    if not isinstance(frame, list) or len(frame) != 5:
        raise ProtocolError(CLOSE_INVALID, "frame is not a [join_ref, ref, topic, event, payload] array")
    join_ref, ref, topic, event, payload = frame
    if not all(r is None or (isinstance(r, str) and len(r) <= MAX_REF_CHARS) for r in (join_ref, ref)):
        raise ProtocolError(CLOSE_INVALID, f"refs are strings of at most {MAX_REF_CHARS} characters, or null")
    if not isinstance(topic, str) or not isinstance(event, str):
        raise ProtocolError(CLOSE_INVALID, "topic and event are strings")
    if len(topic) > MAX_TOPIC_CHARS or len(event) > MAX_EVENT_CHARS:
        raise ProtocolError(CLOSE_INVALID, f"a topic has at most {MAX_TOPIC_CHARS} characters, an event "
                                           f"{MAX_EVENT_CHARS}")
    return Message(join_ref, ref, topic, event, payload)


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # (made once: json.dumps with separators makes one a call)


def encode(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A frame's text, written by orjson (0.34 us for a queue's place against 3.3 with the standard
    library, where a push costs about 30 us in all: docs/performance.md), the same text but for
    non-ASCII characters, written as themselves. What orjson refuses is written by the
    standard library, as JSON allows it: a lone surrogate that a client sent in a topic, a dict key
    that is not a string, an integer past 64 bits."""
    frame = [join_ref, ref, topic, event, payload]
    try:
        return orjson.dumps(frame).decode()
    except TypeError:  # (orjson.JSONEncodeError)
        return _ENCODE(frame)


def reply(message: Message, status: str, response: dict | None = None) -> str:
    return encode(message.join_ref, message.ref, message.topic, REPLY, {"status": status, "response": response or {}})


def push(topic: str, event: str, payload: dict) -> str:
    return encode(None, None, topic, event, payload)
