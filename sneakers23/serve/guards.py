"""What every web application of the store checks at its door, whatever the route (the store, the
channels, the admin desk): the replica's own server limits, security headers, cross-site posts,
and bodies read within a size and a deadline. HAProxy's part of the door is serve/edge.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sneakers23.settings import Settings

# Incoming WebSocket messages: refused by the protocol layer as their frames arrive (a frame's
# declared length, and a message's fragments together), never assembled first.
WS_MAX_MESSAGE_BYTES = 64 * 1024
# A message sent in fragments must be whole this long after its first fragment (a socket holding
# an unfinished message holds up to 64 KiB of the replica's memory for nothing).
WS_FRAGMENTS_DEADLINE_S = 5.0
BODY_DEADLINE_S = 5.0
MAX_FORM_BYTES = 4096

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NO_STORE = {"Cache-Control": "no-store, must-revalidate"}  # the back button must not show a stale page
RETRY_AFTER_S = 1  # what a 503 asks the client to wait before it tries again

# Every page's scripts and styles are files of the store's own (no inline script or style): the
# policy can be strict. Sockets go to the same host (`connect-src 'self'` covers ws: and wss:).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


def json_error(status: int, error: str, message: str) -> JSONResponse:
    """A refusal as every door of the store gives it: a status, and JSON that says why."""
    headers = {**NO_STORE, "Retry-After": str(RETRY_AFTER_S)} if status == 503 else NO_STORE
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def install_door(api, root_redirect: str | None = None) -> None:
    """What every application of the store does at its door: the middleware below, and FastAPI's
    own refusals (an unknown path, a wrong method, a malformed parameter) in the store's JSON."""
    async def body_refused(_request, refused: BodyRefused):
        return json_error(refused.status, refused.error, str(refused))

    async def http_refusal(_request, refusal: HTTPException):
        reason = {404: "not_found", 405: "method_not_allowed"}.get(refusal.status_code, "bad_request")
        return json_error(refusal.status_code, reason, str(refusal.detail)[:200])

    async def invalid(_request, _error: RequestValidationError):
        return json_error(400, "bad_request", "this request's parameters are not valid")

    api.add_middleware(DoorMiddleware, relative_root_redirect=root_redirect)
    api.add_exception_handler(BodyRefused, body_refused)
    api.add_exception_handler(HTTPException, http_refusal)
    api.add_exception_handler(RequestValidationError, invalid)


def tune_replica_server(settings: Settings) -> None:
    """Ray's direct ingress serves each replica with uvicorn and lets none of these be set (Ray 2.60,
    `serve/_private/http_util.py`, which looks `uvicorn.Config` up when it starts the server, after
    the deployment's constructor has run). So the constructor sets them here, for its process:
    - WebSocket messages capped by the protocol layer, and no permessage-deflate (a few KB of
      compressed input must not cost megabytes);
    - a message's fragments whole within WS_FRAGMENTS_DEADLINE_S, and frames written at once
      below the ASGI layers (`replica_websocket`);
    - X-Forwarded-For believed from the store's HAProxy only (`trusted_proxies`), which sets it;
    - no keepalive pings of uvicorn's: the Phoenix heartbeat already tells a dead peer (every 30 s;
      a socket that sends nothing for IDLE_TIMEOUT_S is closed, serve/channels.py). At 10,000
      sockets uvicorn's pings (every 20 s) were 500 sends and 500 pongs parsed a second, 6.5% of
      the channel replica's samples at a queue's release (docs/performance.md)."""
    import uvicorn

    if getattr(uvicorn.Config, "sneakers23", False):
        return
    trusted = [part.strip() for part in settings.trusted_proxies.split(",") if part.strip()]
    protocol = replica_websocket(WS_FRAGMENTS_DEADLINE_S)

    class Config(uvicorn.Config):
        sneakers23 = True

        def __init__(self, *args, **kwargs):
            kwargs.update(ws_max_size=WS_MAX_MESSAGE_BYTES, ws_per_message_deflate=False, proxy_headers=True,
                          forwarded_allow_ips=trusted, ws=protocol, ws_ping_interval=None)
            super().__init__(*args, **kwargs)

    uvicorn.Config = Config


def harden_fallback_proxy() -> list:
    """Serve's fallback proxy (the proxy actor, HAProxy's backup server whenever a backend has no
    replica up: at a start, a reload, a redeploy) runs a uvicorn of its own, which would hold
    WebSocket messages up to 16 MiB, inflated, and fragments without a deadline. Serve calls this
    in that process before its server starts (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, which
    `sneakers23 serve` and cluster.yaml set): the same limits as a replica's. No middleware."""
    from sneakers23.settings import Settings

    tune_replica_server(Settings())
    return []


FALLBACK_PROXY_CALLBACK = f"{__name__}:harden_fallback_proxy"


# A replica's own sockets, each found by a token its ASGI scope carries (`send_now_of`). A token
# rather than the protocol object: Serve's proxy forwards scopes to replicas in other processes.
SEND_NOW = "sneakers23.send_now"
_SOCKETS: dict[str, "asyncio.Protocol"] = {}


def send_now_of(websocket) -> Callable[[str], bool] | None:
    """The socket's `send_now` when the replica's own server holds it and the caller runs on that
    server's loop; else None (through Serve's proxy, a test's stand-in, or the app on a thread of
    its own, as Serve runs it without RAY_SERVE_THROUGHPUT_OPTIMIZED: the transport is the server
    loop's alone)."""
    scope = getattr(websocket, "scope", None) or {}
    protocol = _SOCKETS.get(scope.get("extensions", {}).get(SEND_NOW))
    if protocol is None:
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return protocol.send_now if protocol.loop is running else None


def text_frame(data: bytes) -> bytes:
    """A text message in one frame as websockets writes it with no extension: final, unmasked (a
    server's), its length in one, three or nine bytes (RFC 6455, 5.2)."""
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + data
    return b"\x81\x7f" + size.to_bytes(8, "big") + data


def replica_websocket(deadline_s: float):
    """uvicorn's WebSocket protocol (the one it picks itself, on `websockets`' Sans-I/O layer) with:
    - a deadline on fragmented messages: when the last fragment has not come `deadline_s` after
      the first, the connection is failed with 1008 (policy violation), as a frame over the size
      cap is with 1009. Whole messages and idle sockets are not concerned (the channels' idle
      deadline is theirs);
    - `send_now(text)`: a text frame written to the socket at once, as uvicorn's own send writes
      it, without the ASGI layers above it (Starlette's send, Serve's request-id wrapper, uvicorn's
      dispatch, websockets' framing): 0.6-0.8 of a push's CPU through them (`bench/ws_send_cost.py`).
      Only while the socket takes it at once: open, no close sent or received, its transport not
      paused; False otherwise, and the caller sends through ASGI, which waits."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State

    class ReplicaWebSocket(WebSocketsSansIOProtocol):
        _fragments_timer: asyncio.TimerHandle | None = None
        _token: str | None = None

        def handle_connect(self, event) -> None:
            super().handle_connect(event)
            if not self.close_sent:  # (a handshake refused has no scope, and no app)
                self._token = secrets.token_hex(16)
                _SOCKETS[self._token] = self
                self.scope["extensions"][SEND_NOW] = self._token

        def send_now(self, text: str) -> bool:
            if (self.close_sent or self.disconnected or not self.writable.is_set()
                    or self.conn.state is not State.OPEN or self.transport.is_closing()):
                return False
            data = text.encode()
            if self.conn.extensions:  # (none in a replica: no permessage-deflate)
                self.conn.send_text(data)
                self.transport.write(b"".join(self.conn.data_to_send()))
            else:
                self.transport.write(text_frame(data))
            return True

        def handle_text(self, event) -> None:
            self._watch(event.fin)
            super().handle_text(event)

        def handle_bytes(self, event) -> None:
            self._watch(event.fin)
            super().handle_bytes(event)

        def handle_cont(self, event) -> None:
            if event.fin:
                self._unwatch()
            super().handle_cont(event)

        def connection_lost(self, exc) -> None:
            self._unwatch()
            _SOCKETS.pop(self._token, None)
            super().connection_lost(exc)

        def _watch(self, fin: bool) -> None:
            self._unwatch()
            if not fin:
                self._fragments_timer = self.loop.call_later(deadline_s, self._too_slow)

        def _unwatch(self) -> None:
            if self._fragments_timer is not None:
                self._fragments_timer.cancel()
                self._fragments_timer = None

        def _too_slow(self) -> None:
            self._fragments_timer = None
            if self.close_sent or self.transport.is_closing():
                return
            self.frames = []  # (what the unfinished message held)
            self.conn.fail(1008, "a fragmented message must be whole within seconds")
            self.handle_parser_exception()  # tells the app, sends the close frame, closes

    return ReplicaWebSocket


class BodyRefused(Exception):
    """A request body refused before or while it is read: its status and message."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error = status, error


async def read_body(request, limit: int = MAX_FORM_BYTES, deadline_s: float = BODY_DEADLINE_S) -> bytes:
    """A request's body, no longer than `limit` and within `deadline_s`: 411 without a length (a
    chunked form), 413 past the limit (before a byte is read, when the length says so), 408 late."""
    length = request.headers.get("content-length")
    if length is None:
        raise BodyRefused(411, "length_required", "send the body with a Content-Length")
    if not length.isascii() or not length.isdigit() or int(length) > limit:
        raise BodyRefused(413, "too_large", f"a body may hold at most {limit} bytes")
    body = b""
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, "too_large", f"a body may hold at most {limit} bytes")
    except TimeoutError:
        raise BodyRefused(408, "too_slow", f"the body did not arrive within {deadline_s:.0f} s") from None
    return body


def form_fields(body: bytes) -> dict[str, str]:
    """A posted form's fields (the first value of each); empty when it is not one."""
    try:
        return {key: values[0] for key, values in parse_qs(body.decode(), max_num_fields=32).items()}
    except (UnicodeDecodeError, ValueError):
        return {}


def cross_site(method: str, headers) -> str | None:
    """Why a state-changing request is refused as cross-site, or None. As Go's CrossOriginProtection:
    the browser's Sec-Fetch-Site says where a request came from; an older browser's Origin must be
    the host it was sent to. A request with neither came from no browser (a script with its own
    cookie), which no other site can make a shopper's browser send."""
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"a {site} request may not change anything here"
    origin = headers.get("origin")
    if origin is None:
        return None
    host = headers.get("host", "")
    try:
        parsed = urlsplit(origin)
    except ValueError:
        parsed = None
    if parsed is None or origin == "null" or parsed.netloc.lower() != host.lower():
        return f"a request from {origin[:64]!r} may not change anything here"
    return None


def behind_tls(scope) -> bool:
    """The request came over HTTPS, here or at a TLS balancer in front (X-Forwarded-Proto)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    return any(name == b"x-forwarded-proto" and value == b"https" for name, value in scope.get("headers", ()))


class DoorMiddleware:
    """Security headers on every response, and cross-site state changes refused with 403 before any
    route runs (pure ASGI: a page must not pay for a middleware stack)."""

    def __init__(self, app, relative_root_redirect: str | None = None):
        self.app = app
        self._root_redirect = relative_root_redirect

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = HEADERS + ([HSTS] if behind_tls(scope) else [])
        if scope["method"] not in SAFE_METHODS:  # (a page's GET decodes no header here)
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
            refusal = cross_site(scope["method"], headers)
            if refusal is not None:
                return await _json(send, 403, "cross_site", refusal, extra)
        if self._root_redirect is not None and scope.get("path") == scope.get("root_path") != "":
            # Starlette's own trailing-slash redirect is absolute, built from the Host header.
            return await _respond(send, 307, b"", [(b"location", self._root_redirect.encode())] + extra)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _json(send, status: int, error: str, message: str, extra: list) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
                   + extra)


async def _respond(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
