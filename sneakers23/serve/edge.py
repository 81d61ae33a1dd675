"""The store's front door: deadlines and per-address caps in Serve's HAProxy.

Ray 2.60 writes HAProxy's configuration itself and lets few of these be set (docs/operations.md says
which): no `timeout http-request`, one `timeout client` for pages and sockets alike (an hour), no
per-address limits, no X-Forwarded-For, and its stats and metrics pages on every interface. Serve
starts HAProxy through `sneakers23-haproxy` (RAY_SERVE_HAPROXY_BINARY_PATH, serve/node.py), which
passes the file Ray wrote through `harden` before HAProxy reads it, at every start and reload.

What `harden` adds, as nginx and HAProxy do for a public-facing service:
- headers, then a body, must each arrive within HEADER_DEADLINE_S (else 408), before a replica sees
  the request; a client idle past CLIENT_IDLE_S mid-request is cut; a socket (a tunnel, once
  upgraded) may idle TUNNEL_IDLE_S;
- a body longer than MAX_BODY_BYTES is refused with 413 before it is read;
- per client address: open connections past `connections_per_address`, and requests past
  `requests_per_address_per_second` (over 10 s), get 429 with Retry-After; past twice either cap,
  the address's connections are closed unanswered (no descriptor, no answer is spent on a flood);
- X-Forwarded-For is set to the client's address (never the client's own header), for the store's
  own per-address rules (the staff login throttle) and its audit;
- the stats page binds to the store's own address (loopback on a cluster), the metrics page too
  (every interface on a cluster, for Prometheus: keep the port inside the cluster's network);
- HAProxy's own overload answers (502: a replica reset the connection; 503: no replica free, or
  the queue's wait over; 504: a replica's answer too slow) are a 503 in JSON with Retry-After.
  Ray's template turns all three into one plain-text "500 Internal Server Error" file, and a
  shopper's page or script must be told to try again, not that the store broke (BUSY_FILE, which
  `sneakers23-haproxy` writes beside Ray's: `errorfile` is the only way to change the status).

Pure text in, text out: no Ray, no HAProxy here (tests/serve/test_edge.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARK = "# sneakers23 edge rules (sneakers23/serve/edge.py)"
HEADER_DEADLINE_S = 5
CLIENT_IDLE_S = 30
KEEP_ALIVE_S = 10
SERVER_IDLE_S = 60  # a replica's answer (the store's own deadlines are shorter)
TUNNEL_IDLE_S = 120  # the Phoenix client's heartbeat comes every 30 s; the channels close at 60 s idle
MAX_BODY_BYTES = 64 * 1024
RATE_WINDOW_S = 10
FLOOD_FACTOR = 2  # past twice a cap, a client's connections are closed unanswered
RETRY_AFTER_S = 5
BUSY_FILE = "sneakers23-busy.http"  # HAProxy's own 502/503/504, answered as this file says
_BUSY_BODY = ('{"error":"unavailable","message":"So many shoppers are here right now: try again in a moment"}')
BUSY_RESPONSE = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                 f"Retry-After: {RETRY_AFTER_S}\r\nContent-Length: {len(_BUSY_BODY)}\r\nConnection: close\r\n\r\n"
                 f"{_BUSY_BODY}")
_ERRORFILE = re.compile(r"^(\s*errorfile\s+50[234]\s+)(\S+)\s*$")

_REPLACED_TIMEOUTS = re.compile(r"^\s*timeout\s+(client|server|http-request|http-keep-alive|tunnel)\b")
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|program)\b")


@dataclass(frozen=True)
class EdgeLimits:
    connections_per_address: int  # 0: no cap
    requests_per_address_per_second: int  # 0: no cap


def _json_return(status: int, error: str, message: str, condition: str) -> str:
    body = '{\\"error\\":\\"%s\\",\\"message\\":\\"%s\\"}' % (error, message)
    retry = f" hdr Retry-After {RETRY_AFTER_S}" if status in (429, 503) else ""
    return (f'    http-request return status {status} content-type application/json{retry} '
            f'hdr Cache-Control no-store string "{body}" if {condition}')


def frontend_rules(limits: EdgeLimits) -> list[str]:
    """The rules added after the store's frontend binds: every `tcp-request` rule first (HAProxy
    runs them before any `http-request` rule, wherever they are written)."""
    connections, per_window = limits.connections_per_address, limits.requests_per_address_per_second * RATE_WINDOW_S
    tcp, http = [], []
    if connections or per_window:
        tcp += [f"    stick-table type ipv6 size 200k expire {RATE_WINDOW_S * 3}s "
                f"store conn_cur,http_req_rate({RATE_WINDOW_S}s)",
                "    tcp-request connection track-sc0 src"]
    if connections:
        tcp.append(f"    tcp-request connection reject if {{ sc_conn_cur(0) gt {FLOOD_FACTOR * connections} }}")
        http.append(_json_return(429, "too_many_connections", f"more than {connections} connections from one address",
                                 f"{{ sc_conn_cur(0) gt {connections} }}"))
    if per_window:
        # Far past its cap, a client is not answered any more: its connections are closed at once
        # (a flood of 429s would cost HAProxy more than the client), until its rate falls again.
        tcp.append(f"    tcp-request connection reject if {{ sc_http_req_rate(0) gt {FLOOD_FACTOR * per_window} }}")
        http.append(f"    http-request reject if {{ sc_http_req_rate(0) gt {FLOOD_FACTOR * per_window} }}")
        http.append(_json_return(429, "too_many_requests", f"more than {limits.requests_per_address_per_second} "
                                 "requests a second from one address: slow down",
                                 f"{{ sc_http_req_rate(0) gt {per_window} }}"))
    http.append(_json_return(413, "too_large", f"a request body may hold at most {MAX_BODY_BYTES} bytes",
                             f"{{ req.hdr_val(content-length) gt {MAX_BODY_BYTES} }}"))
    # The body too must arrive within the deadline before a replica sees the request, so a slow
    # body holds an HAProxy buffer, never one of a replica's request slots.
    http.append(f"    http-request wait-for-body time {HEADER_DEADLINE_S}s")
    http.append("    http-request set-header X-Forwarded-For %[src]")
    return [f"    {MARK}", f"    timeout http-request {HEADER_DEADLINE_S}s", *tcp, *http]


def harden(config: str, limits: EdgeLimits) -> str:
    """Ray's HAProxy configuration with the store's edge rules; a file already hardened is returned
    as it is."""
    if MARK in config:
        return config
    lines = config.splitlines()
    frontend_host = _frontend_host(lines)
    local = frontend_host not in ("*", "", "0.0.0.0", "::", "[::]")
    stats_host = frontend_host if local else "127.0.0.1"
    metrics_host = frontend_host if local else "*"
    out: list[str] = []
    section = ""
    for line in lines:
        header = _SECTION.match(line)
        if header:
            if section == "defaults":
                out += _defaults_timeouts()
            section = line.strip()
            out.append(line)
            continue
        if section == "defaults" and _REPLACED_TIMEOUTS.match(line):
            continue
        if (errorfile := _ERRORFILE.match(line)) is not None:
            out.append(f"{errorfile[1]}{busy_file_for(errorfile[2])}")
            continue
        if section == "frontend prometheus" and line.strip().startswith("bind "):
            out.append(f"    bind {metrics_host}:{line.strip().rsplit(':', 1)[1]}")
            continue
        if section == "listen stats" and line.strip().startswith("bind "):
            out.append(f"    bind {stats_host}:{line.strip().rsplit(':', 1)[1]}")
            continue
        out.append(line)
        if section == "frontend http_frontend" and line.strip().startswith("bind "):
            out += frontend_rules(limits)
    if section == "defaults":
        out += _defaults_timeouts()
    return "\n".join(out) + "\n"


def busy_file_for(ray_error_file: str) -> str:
    """Where the store's busy answer is, for an error file of Ray's: beside it."""
    directory = ray_error_file.rpartition("/")[0]
    return f"{directory}/{BUSY_FILE}" if directory else BUSY_FILE


def busy_files(config: str) -> set[str]:
    """The store's busy answers a hardened configuration points to (`sneakers23-haproxy` writes
    BUSY_RESPONSE to each before HAProxy reads the file)."""
    return {match[2] for line in config.splitlines() if (match := _ERRORFILE.match(line)) is not None}


def _defaults_timeouts() -> list[str]:
    return [f"    timeout client {CLIENT_IDLE_S}s", f"    timeout server {SERVER_IDLE_S}s",
            f"    timeout http-keep-alive {KEEP_ALIVE_S}s", f"    timeout tunnel {TUNNEL_IDLE_S}s"]


def _frontend_host(lines: list[str]) -> str:
    section = ""
    for line in lines:
        if _SECTION.match(line):
            section = line.strip()
        elif section == "frontend http_frontend" and line.strip().startswith("bind "):
            return line.strip().split()[1].rsplit(":", 1)[0]
    return "*"
