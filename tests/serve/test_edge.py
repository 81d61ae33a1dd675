"""The store's edge rules (serve/edge.py) on the configuration Ray 2.60 really writes: rendered by
Ray's own HAProxy code, hardened, then checked by the HAProxy binary Ray ships (`haproxy -c`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sneakers23.node import haproxy_binary
from sneakers23.serve.edge import BUSY_FILE, BUSY_RESPONSE, MARK, EdgeLimits, busy_files, harden


def ray_config(tmp_path, host: str, port: int = 8000, metrics_port: int = 9101, stats_port: int = 8404) -> str:
    """Ray's configuration as Ray writes it (with its plain-text 500 file for HAProxy's own
    502/503/504, written beside it)."""
    from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
    from ray.serve.config import HTTPOptions

    config = HAProxyConfig(http_options=HTTPOptions(host=host, port=port), metrics_port=metrics_port,
                           stats_port=stats_port, socket_path=str(tmp_path / "admin.sock"))
    backends = {name: BackendConfig(name=name, path_prefix=prefix, app_name=name,
                                    servers=[ServerConfig(name=f"{name}-1", host="127.0.0.1", port=30000 + n)])
                for n, (name, prefix) in enumerate((("store", "/"), ("channels", "/product_socket")))}
    api = HAProxyApi(config, backends, config_file_path=str(tmp_path / "haproxy.cfg"))
    api._generate_config_file_internal()  # (private: Ray is pinned to 2.60)
    return (tmp_path / "haproxy.cfg").read_text()


def checked_by_haproxy(tmp_path, text: str) -> str:
    for busy in busy_files(text):  # (as sneakers23-haproxy writes them)
        Path(busy).write_text(BUSY_RESPONSE)
    path = tmp_path / "hardened.cfg"
    path.write_text(text)
    checked = subprocess.run([haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout + checked.stderr


def test_a_hardened_local_config_is_valid_and_listens_only_where_the_store_does(tmp_path):
    original = ray_config(tmp_path, "127.0.0.1")
    hardened = harden(original, EdgeLimits(256, 100))
    said = checked_by_haproxy(tmp_path, hardened)
    assert "timeouts are set to a non-zero value" not in said  # every timeout HAProxy wants is there
    binds = [line.split()[1] for line in hardened.splitlines() if line.strip().startswith("bind ")]
    assert binds and all(bind.startswith("127.0.0.1:") for bind in binds), binds
    assert "bind :9101" in original and "bind *:8404" in original  # (what Ray alone would do)
    for rule in ("timeout http-request 5s", "timeout client 30s", "timeout tunnel 120s", "timeout server 60s",
                 "http-request wait-for-body time 5s", "track-sc0 src", "sc_conn_cur(0) gt 256",
                 "tcp-request connection reject if { sc_http_req_rate(0) gt 2000 }",
                 "sc_conn_cur(0) gt 512", "sc_http_req_rate(0) gt 1000", "X-Forwarded-For %[src]",
                 "req.hdr_val(content-length) gt 65536"):
        assert rule in hardened, rule
    assert "timeout client 3600s" not in hardened


def test_on_a_cluster_the_stats_page_is_loopback_only_and_caps_can_be_turned_off(tmp_path):
    hardened = harden(ray_config(tmp_path, "0.0.0.0"), EdgeLimits(0, 0))
    checked_by_haproxy(tmp_path, hardened)
    binds = [line.split()[1] for line in hardened.splitlines() if line.strip().startswith("bind ")]
    assert "127.0.0.1:8404" in binds and "*:9101" in binds and "*:8000" in binds
    assert "track-sc0" not in hardened and "429" not in hardened
    assert "timeout http-request 5s" in hardened and "X-Forwarded-For %[src]" in hardened


def test_hardening_twice_changes_nothing(tmp_path):
    once = harden(ray_config(tmp_path, "127.0.0.1"), EdgeLimits(10, 10))
    assert harden(once, EdgeLimits(10, 10)) == once and once.count(MARK) == 1


def test_a_config_without_the_store_frontend_only_gets_timeouts():
    config = "global\n  maxconn 10\ndefaults\n  mode http\n  timeout client 1h\nfrontend shop\n  bind 127.0.0.1:1\n"
    hardened = harden(config, EdgeLimits(10, 10))
    assert "track-sc0" not in hardened and "timeout client 30s" in hardened and "timeout client 1h" not in hardened


def test_haproxys_own_overload_answers_are_a_503_in_json_with_retry_after_never_rays_500(tmp_path):
    import json
    import signal
    import socket

    import httpx

    from harness.ports import free_port
    from harness.waiting import wait_for

    port = free_port()
    original = ray_config(tmp_path, "127.0.0.1", port, free_port(), free_port())
    assert original.count(f"{tmp_path / '500.http'}") == 3  # (Ray's: 502, 503 and 504 as one 500)
    hardened = harden(original, EdgeLimits(256, 100))
    assert busy_files(hardened) == {str(tmp_path / BUSY_FILE)} and "500.http" not in hardened
    checked_by_haproxy(tmp_path, hardened)

    # A real HAProxy whose replicas are all down (nothing listens on their ports) tells the shopper
    # to come back, in JSON, with Retry-After.
    (tmp_path / "hardened.cfg").write_text(hardened)
    haproxy = subprocess.Popen([haproxy_binary(), "-db", "-f", str(tmp_path / "hardened.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                assert haproxy.poll() is None, haproxy.stderr.read().decode()
                return False

        wait_for(listening, what="HAProxy on its port")
        for path in ("/", "/checkout"):
            answer = httpx.request("GET" if path == "/" else "POST", f"http://127.0.0.1:{port}{path}", timeout=30)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "5", (answer.status_code, answer.text)
            assert json.loads(answer.text)["error"] == "unavailable"
    finally:
        haproxy.send_signal(signal.SIGTERM)
        haproxy.wait(10)
