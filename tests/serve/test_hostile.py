"""Hostile clients against a real store, started as `sneakers23 serve` starts it (its own Ray
cluster, Serve's HAProxy in front with the store's edge rules). Each attack comes from an address
of its own (127.0.0.2, .4, .5, …: the per-address caps of one never touch another test's); an
honest shopper at 127.0.0.3 must be served while it runs.

One store for the module: every attack here is bounded and ends before the next begins.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import websockets.asyncio.client
import websockets.exceptions

from sneakers23.serve.shoppers import FORM_TOKEN_HEADER
from tests.support import aio
from harness.attacks import (HONEST, HOSTILE, close_code_after, honest_requests, honest_socket, idle_sockets,
                                   slow_bodies, slow_headers)
from harness.ports import free_port
from tests.support.shoppers import open_shop
from tests.support.store_process import StoreProcess, clean_env, cli
from harness.waiting import wait_for

ADMIN_PASSWORD = "hostile-test-admin-password"
SECRET = "hostile-test-secret-key-of-32-bytes-or-more"
REQUESTS_PER_SECOND = 50  # per address (lower than the default, so that the flood test is short)
ANSWER_WITHIN_S = 3.0  # what an honest shopper waits for before calling the store down


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    ray_tmp = tempfile.mkdtemp(prefix="s23hostile-", dir="/tmp")
    port = free_port()
    env = clean_env(RAY_TMPDIR=ray_tmp, SNEAKERS23_DATABASE_URL=f"sqlite:///{directory / 'shop.db'}",
                    SNEAKERS23_ADMIN_PASSWORD=ADMIN_PASSWORD, SNEAKERS23_SECRET_KEY=SECRET,
                    SNEAKERS23_REQUESTS_PER_ADDRESS_PER_SECOND=str(REQUESTS_PER_SECOND))
    process = StoreProcess(["--port", str(port), "--release", "1"], env, directory).start()
    try:
        url = process.wait_open().rstrip("/")
        # A purchase before any attack: it starts product 1's sales actor (a new Ray worker, seconds
        # on a busy machine), so the honest shopper's timings below measure the attacks alone.
        warm = aio.run(honest_requests(url, 2, source="127.0.0.20", timeout=120, purchase_item=in_stock_item(url)))
        assert warm.statuses[-1] in (200, 409), warm.statuses
        yield process, port
    finally:
        process.kill_what_is_left()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def store(served):
    """(its address, its port)."""
    process, port = served
    return f"http://127.0.0.1:{port}", port


def answered(honest, what: str) -> None:
    assert honest.statuses and honest.ok_share() == 1.0, f"{what}: {honest.statuses}"
    assert max(honest.latencies) < ANSWER_WITHIN_S, f"{what}: {max(honest.latencies):.2f}s"


def in_stock_item(url: str) -> int:
    product = httpx.get(f"{url}/api/products", timeout=10).json()[0]
    return next(item["id"] for item in product["items"] if item["level"] != "out")


def test_slow_bodies_and_slow_headers_hold_no_replica(store):
    url, port = store
    item = in_stock_item(url)

    async def run():
        for attack in (slow_bodies, slow_headers):
            held = await attack("127.0.0.1", port, 300, source="127.0.0.5")
            try:
                assert len(held.writers) == 300
                answered(await honest_requests(url, 12, purchase_item=item, timeout=ANSWER_WITHIN_S + 1),
                       attack.__name__)
            finally:
                await held.close()

    aio.run(run())


def test_a_slow_body_alone_is_cut_after_the_deadline_with_408(store):
    url, port = store

    async def run():
        held = await slow_bodies("127.0.0.1", port, 1, source="127.0.0.4")
        answer = await asyncio.wait_for(held.readers[0].read(200), 15)
        await held.close()
        return answer

    assert b" 408 " in aio.run(run())


def test_idle_sockets_past_the_cap_of_one_address_get_429_and_another_address_still_gets_in(store):
    url, port = store

    async def run():
        held = await idle_sockets("127.0.0.1", port, 600, source="127.0.0.6")
        try:
            assert 0 < len(held.writers) <= 256 and held.statuses.get(429, 0) >= 600 - 256 - 4, held.statuses
            reply = await honest_socket("127.0.0.1", port, timeout=ANSWER_WITHIN_S)
            assert reply[4]["status"] == "ok"
        finally:
            await held.close()

    aio.run(run())


def test_a_request_flood_from_one_address_gets_429_with_retry_after_and_others_go_on(store):
    url, _port = store

    async def run():
        import aiohttp

        statuses, retry_after = [], set()
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.7", 0), limit=20)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one():
                async with session.get(f"{url}/healthz") as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        retry_after.add(response.headers.get("Retry-After"))
                        assert (await response.json())["error"] == "too_many_requests"

            await asyncio.gather(*(one() for _ in range(REQUESTS_PER_SECOND * 10 + 200)))
        assert statuses.count(429) >= 150 and retry_after == {"5"}, (statuses.count(429), retry_after)
        answered(await honest_requests(url, 6, source=HONEST), "a flood from another address")

    aio.run(run())


def fallback_proxy_port(process) -> int:
    """The port of Serve's fallback proxy: HAProxy's backup server, from the file it was given."""
    for pid in process.processes():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if args[0].endswith("haproxy") and "-f" in args:
            config = Path(args[args.index("-f") + 1]).read_text()
            return int(re.search(r"SERVE_PROXY_ACTOR-fallback-\S+ [0-9.]+:([0-9]+)", config).group(1))
    raise AssertionError("no HAProxy among the store's processes")


@pytest.mark.parametrize("door", ["HAProxy", "the fallback proxy"])
def test_websocket_messages_are_capped_by_the_protocol_and_compression_is_off(served, door):
    process, haproxy_port = served
    port = haproxy_port if door == "HAProxy" else fallback_proxy_port(process)

    async def run():
        async with websockets.asyncio.client.connect(
                f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0", max_size=None,
                compression="deflate", local_addr=("127.0.0.8", 0)) as socket:
            assert socket.response.headers.get("Sec-WebSocket-Extensions") is None  # deflate refused
            await socket.send(json.dumps(["1", "1", "product:1", "phx_join", {}]))
            assert json.loads(await socket.recv())[4]["status"] == "ok"

        # A frame declaring more than 64 KiB: refused at its header, before a byte of its payload
        # comes. Then a message in fragments of 1 KiB: refused at the header of the fragment that
        # would take it past 64 KiB, before the message is whole.
        too_large = [(True, 0x1, b"", 64 * 1024 + 100)]
        fragments = [(False, 0x1 if n == 0 else 0x0, b"x" * 1024, 1024) for n in range(64)] + [(False, 0x0, b"", 1024)]
        for frames in (too_large, fragments):
            assert await close_code_after("127.0.0.1", port, frames, source="127.0.0.8") == 1009
        assert (await honest_socket("127.0.0.1", port))[4]["status"] == "ok"

    aio.run(run())


@pytest.mark.parametrize("door", ["HAProxy", "the fallback proxy"])
def test_a_fragmented_message_left_unfinished_closes_its_socket_within_the_deadline(served, door):
    """Through HAProxy to a replica, and straight to Serve's fallback proxy (HAProxy's backup while
    a backend has no replica up, as at a start or a reload): both cut it."""
    from sneakers23.serve.guards import WS_FRAGMENTS_DEADLINE_S

    process, port = served
    door_port = port if door == "HAProxy" else fallback_proxy_port(process)

    async def run():
        async with websockets.asyncio.client.connect(
                f"ws://127.0.0.1:{door_port}/product_socket/websocket?vsn=2.0.0", local_addr=("127.0.0.8", 0)) as socket:
            never_finished = asyncio.Event()

            async def fragments():  # a first fragment, then nothing (the socket stays open meanwhile)
                yield '["1", "1", "product:1", '
                await never_finished.wait()
                yield '"phx_join", {}]'

            sending = asyncio.get_running_loop().create_task(socket.send(fragments()))
            started = asyncio.get_running_loop().time()
            assert (await honest_socket("127.0.0.1", port))[4]["status"] == "ok"  # everyone else goes on
            await asyncio.wait_for(socket.wait_closed(), WS_FRAGMENTS_DEADLINE_S + 10)
            assert socket.close_code == 1008
            assert asyncio.get_running_loop().time() - started < WS_FRAGMENTS_DEADLINE_S + 5
            sending.cancel()

    aio.run(run())


def database_and_cache_versions(process) -> tuple[int, list[int]]:
    """`sneakers23 status` of the store: the database's version, and each node cache's lag."""
    status = cli("status", env=process.env, cwd=process.cwd)
    assert status.returncode == 0, status.stderr
    version = int(re.search(r"^database .* version (\d+)$", status.stdout, re.M).group(1))
    lags = [int(row.split()[5]) for row in status.stdout.splitlines() if re.match(r"^[0-9a-f]{12}\s", row)]
    return version, lags


def test_minted_shoppers_sockets_that_never_read_and_rejoin_floods_leave_no_state_and_others_are_served(served):
    """Three attacks in short form, at once, each from addresses of its own: 200 minted shoppers
    (page, cart join, add, remove: their emptied carts are held nowhere), 50 sockets sending
    heartbeats and never reading, 20 sockets joining one cart topic again and again."""
    process, port = served
    url = f"http://127.0.0.1:{port}"
    socket_url = f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0"
    item = in_stock_item(url)
    version_before, _lags = database_and_cache_versions(process)

    def cart_of(source: str) -> tuple[str, str]:
        """A new shopper's id and cart token, from the page it opens."""
        # (plain HTTP: no certificates to load, 27 ms of CPU each, which 50 threads at once spent
        # queued for the interpreter's lock, the test's own event loop among them)
        plain = httpx.HTTPTransport(local_address=source, verify=False)
        with httpx.Client(base_url=url, timeout=10, transport=plain) as client:
            page = client.get("/").text
        found = re.search(r'data-cart-id="([0-9a-f]+)" data-cart-token="([^"]+)"', page)
        return found.group(1), found.group(2)

    async def minted(number: int) -> list:
        source = f"127.0.2.{number % 50 + 1}"
        shopper, token = await asyncio.to_thread(cart_of, source)
        async with websockets.asyncio.client.connect(socket_url, local_addr=(source, 0)) as socket:
            topic = f"cart:{shopper}"

            async def reply_to(ref: str, event: str, payload: dict) -> dict:
                await socket.send(json.dumps(["1", ref, topic, event, payload]))
                while (frame := json.loads(await socket.recv()))[1] != ref:  # (the cart's pushes)
                    pass
                return frame[4]

            replies = [await reply_to("1", "phx_join", {"token": token}),
                       await reply_to("2", "add_item", {"item_id": item}),
                       await reply_to("3", "remove_item", {"item_id": item})]
        return [reply["status"] if reply["status"] == "ok" else reply for reply in replies]

    async def never_reading(stop: asyncio.Event, flooding: asyncio.Event) -> int:
        sockets = [await websockets.asyncio.client.connect(socket_url, local_addr=("127.0.0.11", 0),
                                                           max_queue=1) for _ in range(50)]
        sent = 0
        try:
            while not stop.is_set():
                for socket in sockets:
                    await socket.send(json.dumps([None, str(sent), "phoenix", "heartbeat", {}]))
                    sent += 1
                flooding.set()
                await asyncio.sleep(0.05)
        finally:
            for socket in sockets:
                socket.transport.abort()
        return sent

    async def rejoining(stop: asyncio.Event, flooding: asyncio.Event) -> dict:
        shopper, token = await asyncio.to_thread(cart_of, "127.0.0.12")
        replies: dict[str, int] = {}

        async def one() -> None:
            async with websockets.asyncio.client.connect(socket_url, local_addr=("127.0.0.12", 0)) as socket:
                ref = 0
                while not stop.is_set():
                    ref += 1
                    await socket.send(json.dumps(["1", str(ref), f"cart:{shopper}", "phx_join", {"token": token}]))
                    status = json.loads(await socket.recv())[4]["status"]
                    replies[status] = replies.get(status, 0) + 1
                    flooding.set()
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(one() for _ in range(20)))
        return replies

    async def run():
        stop, heartbeating, rejoined = asyncio.Event(), asyncio.Event(), asyncio.Event()
        floods = asyncio.gather(never_reading(stop, heartbeating), rejoining(stop, rejoined))
        # The floods under way before the minted shoppers come (CI98: the 50 never-reading sockets
        # were still connecting, one by one on a busy machine, when everything else was done).
        await asyncio.wait_for(asyncio.gather(heartbeating.wait(), rejoined.wait()), timeout=60)
        churned = []
        for first in range(0, 200, 50):
            churned += await asyncio.gather(*(minted(n) for n in range(first, first + 50)))
        answered(await honest_requests(url, 12, purchase_item=item, timeout=ANSWER_WITHIN_S + 1),
                 "beside the minted shoppers, the never-reading sockets and the rejoin flood")
        assert (await honest_socket("127.0.0.1", port))[4]["status"] == "ok"
        stop.set()
        heartbeats, rejoins = await floods
        assert len(churned) == 200 and all(replies == ["ok"] * 3 for replies in churned), \
            [replies for replies in churned if replies != ["ok"] * 3][:3]
        assert heartbeats > 0 and set(rejoins) == {"ok"} and rejoins["ok"] > 20, rejoins

    aio.run(run())
    # Their carts were emptied: the database's version counts none of them, and every node's cache
    # holds what the database holds (a cache that kept an emptied cart would be ahead of it).
    wait_for(lambda: database_and_cache_versions(process)[1] == [0], timeout=15, what="the caches caught up")
    version_after, _lags = database_and_cache_versions(process)
    purchases = 6  # (the honest shopper's: each sale moves a size's version on, sold or refused, at most 6)
    assert version_before <= version_after <= version_before + purchases


def test_malformed_ids_and_frames_get_a_clear_refusal_never_a_500(store):
    url, port = store
    with httpx.Client(base_url=url, timeout=10) as client:
        open_shop(client)
        for path in ("/api/items/%C2%B2/purchase", "/api/items/%D9%A3/purchase", f"/api/items/{'9' * 40}/purchase",
                     "/api/items/7_0/purchase", "/api/items/+7/purchase"):
            answer = client.post(path, headers={"Origin": url})
            assert answer.status_code == 400 and answer.json()["error"] == "bad_request", (path, answer.text)
        assert client.post("/api/items/99999/purchase").json()["error"] == "unknown_item"

    async def frames():
        async with websockets.asyncio.client.connect(
                f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0", local_addr=(HOSTILE, 0)) as socket:
            await socket.send(json.dumps(["1", "1", "product:²", "phx_join", {}]))
            reply = json.loads(await socket.recv())
            assert reply[4] == {"status": "error", "response": {"reason": "unknown product"}}
            await socket.send(json.dumps(["1", "2", "x" * 1000, "phx_join", {}]))  # a topic too long to echo
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd.code == 1007

    aio.run(frames())


def test_cross_site_posts_are_refused_with_403_and_buy_nothing(store):
    url, _port = store
    item = in_stock_item(url)
    with httpx.Client(base_url=url, timeout=10) as shopper:
        open_shop(shopper)
        before = shopper.get("/api/products").json()
        for headers in ({"Origin": "http://evil.example:9999"}, {"Sec-Fetch-Site": "same-site"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            for path, body in ((f"/api/items/{item}/purchase", None), ("/checkout", f"version=1&item_ids={item}"),
                               ("/admin/login", "who=x&password=y"), ("/admin/actions", "{}"),
                               ("/admin/logout", "")):
                answer = shopper.post(path, content=body, headers=headers)
                assert answer.status_code == 403 and answer.json()["error"] == "cross_site", (path, headers)
        assert shopper.get("/api/products").json() == before
        same = shopper.post(f"/api/items/{item}/purchase", headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 200


def test_a_purchase_or_checkout_without_the_shoppers_form_token_is_refused_with_403(store):
    """Same-site pages (another port on the host, a sibling subdomain) pass the Origin check: the
    form token, which only the shop's own page holds, is what they lack."""
    url, _port = store
    item = in_stock_item(url)
    with httpx.Client(base_url=url, timeout=10) as shopper, httpx.Client(base_url=url, timeout=10) as other:
        open_shop(shopper)
        token = shopper.headers.pop(FORM_TOKEN_HEADER)
        open_shop(other)
        someone_elses = other.headers[FORM_TOKEN_HEADER]
        assert someone_elses != token  # a token is the shopper's own
        before = shopper.get("/api/products").json()
        for sent in (None, "", someone_elses, token[:-1] + ("0" if token[-1] != "0" else "1")):
            headers = {} if sent is None else {FORM_TOKEN_HEADER: sent}
            answer = shopper.post(f"/api/items/{item}/purchase", headers=headers)
            assert answer.status_code == 403 and answer.json()["error"] == "csrf", sent
            form = {"version": "1", "item_ids": str(item)} | ({} if sent is None else {"csrf_token": sent})
            page = shopper.post("/checkout", data=form)
            assert page.status_code == 403 and "not from this shop" in page.text, sent
        assert shopper.get("/api/products").json() == before  # nothing sold
        checkout = shopper.get("/checkout").text
        assert f'name="csrf_token" value="{token}"' in checkout  # the page's own form carries it
        assert shopper.post(f"/api/items/{item}/purchase", headers={FORM_TOKEN_HEADER: token}).status_code == 200


def test_bodies_need_a_length_within_the_limit(store):
    url, _port = store
    with httpx.Client(base_url=url, timeout=10) as shopper:
        open_shop(shopper)

        def chunked():
            yield b"version=1&item_ids=3"

        assert shopper.post("/checkout", content=chunked()).status_code == 411
        assert shopper.post("/checkout", content=b"x" * 5000).status_code == 413
        too_large = shopper.post("/checkout", content=b"x" * 70_000)  # refused by HAProxy, before a replica
        assert too_large.status_code == 413 and too_large.json()["error"] == "too_large"


def test_every_page_sends_the_security_headers(store):
    url, _port = store
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in ("/", "/checkout", "/orders", "/api/products", "/healthz", "/static/css/store.css",
                     "/admin/login", "/admin/", "/product_socket/websocket"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin", path
            assert "strict-transport-security" not in headers
        behind_tls = client.get("/", headers={"X-Forwarded-Proto": "https"})
        assert behind_tls.headers["strict-transport-security"].startswith("max-age=")
        redirect = client.get("/admin", headers={"Host": "evil.example"})
        assert redirect.status_code == 307 and redirect.headers["location"] == "/admin/"


def test_a_throttled_address_cannot_keep_the_staff_out(store):
    url, _port = store

    def login(source: str, password: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=source)) as client:
            form = re.search(r'name="form_token" value="([^"]+)"', client.get("/admin/login").text).group(1)
            return client.post("/admin/login", data={"who": "staff", "password": password, "form_token": form})

    statuses = [login(HOSTILE, "a wrong guess").status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2, statuses
    refused = login(HOSTILE, ADMIN_PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0  # the right one too
    assert login(HONEST, ADMIN_PASSWORD).status_code == 303  # the staff, at their own address


def test_the_shopper_cookie_expires_is_secure_behind_tls_and_binds_the_cart_token(store):
    import time

    from itsdangerous import TimestampSigner

    from sneakers23.serve.shoppers import COOKIE, MAX_AGE_S

    url, port = store
    plain = httpx.get(f"{url}/", timeout=10)
    flags = plain.headers["set-cookie"]
    assert "HttpOnly" in flags and "SameSite=lax" in flags and f"Max-Age={MAX_AGE_S}" in flags and "Secure" not in flags
    assert "Secure" in httpx.get(f"{url}/", headers={"X-Forwarded-Proto": "https"}, timeout=10).headers["set-cookie"]

    shopper = re.search(r'data-cart-id="([0-9a-f]{64})"', plain.text).group(1)
    old = TimestampSigner(SECRET, salt="sneakers23-shopper")
    old.get_timestamp = lambda: int(time.time()) - MAX_AGE_S - 60
    again = httpx.get(f"{url}/", cookies={COOKIE: old.sign(shopper).decode()}, timeout=10)
    assert re.search(r'data-cart-id="([0-9a-f]{64})"', again.text).group(1) != shopper  # expired: a new shopper

    token = re.search(r'data-cart-token="([^"]+)"', plain.text).group(1)
    other_cookie = httpx.get(f"{url}/", timeout=10).cookies[COOKIE]

    async def join_with(cookie: str) -> dict:
        async with websockets.asyncio.client.connect(
                f"ws://127.0.0.1:{port}/product_socket/websocket?vsn=2.0.0",
                additional_headers={"Cookie": f"{COOKIE}={cookie}"}) as socket:
            await socket.send(json.dumps(["1", "1", f"cart:{shopper}", "phx_join", {"token": token}]))
            return json.loads(await socket.recv())[4]

    assert aio.run(join_with(plain.cookies[COOKIE]))["status"] == "ok"
    refused = aio.run(join_with(other_cookie))  # the page's token, in another browser
    assert refused["status"] == "error" and refused["response"]["reason"] == "invalid_token"


def test_fuzzed_requests_get_a_status_below_500_and_json_refusals(store):
    """Hypothesis against the real store: purchase ids, checkout forms and admin actions."""
    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings, strategies as st

    url, _port = store
    transport = httpx.HTTPTransport(local_address="127.0.0.9")
    with httpx.Client(base_url=url, timeout=10, transport=transport) as shopper, \
            httpx.Client(base_url=url, timeout=10, transport=transport) as staff:
        open_shop(shopper)
        form = re.search(r'name="form_token" value="([^"]+)"', staff.get("/admin/login").text).group(1)
        staff.post("/admin/login", data={"who": "fuzz", "password": ADMIN_PASSWORD, "form_token": form})
        csrf = re.search(r'data-csrf="([^"]+)"', staff.get("/admin/").text).group(1)

        def check(answer: httpx.Response) -> None:
            assert answer.status_code < 500 or answer.status_code == 503, (answer.status_code, answer.text[:200])
            if answer.status_code >= 400 and answer.headers.get("content-type", "").startswith("application/json"):
                assert answer.json()["message"]

        header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300)  # (what h11 sends)

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(item=st.text(min_size=1, max_size=30), key=st.none() | header_text,
               form=st.binary(max_size=600), action=st.from_regex(r"\A\{.{0,200}\}\Z") | st.text(max_size=200))
        def fuzz(item, key, form, action):
            headers = {} if key is None else {"Idempotency-Key": key}
            check(shopper.post(f"/api/items/{quote(item, safe='')}/purchase", headers=headers))
            # (with the shopper's token after it, so that a form that parses goes on past the check)
            check(shopper.post("/checkout", content=form + b"&csrf_token=" + shopper.headers[FORM_TOKEN_HEADER].encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"}))
            check(staff.post("/admin/actions", content=action.encode(), headers={"X-CSRF-Token": csrf,
                                                                                 "Content-Type": "application/json"}))

        fuzz()
        assert shopper.get("/healthz").status_code == 200


def test_a_local_store_listens_only_on_its_own_host(served):
    """HAProxy's stats and metrics pages and Ray's dashboard: on the store's --host (here the
    default, loopback), never on every interface."""
    from tests.support.store_process import listening_ports

    process, port = served
    dashboard = int(re.search(r"dashboard \(Ray jobs\) at http://127\.0\.0\.1:(\d+)", process.output()).group(1))
    haproxy = {pid for pid in process.processes() if process_name(pid) == "haproxy"}
    haproxy_ports = listening_ports(haproxy)
    assert port in haproxy_ports and len(haproxy_ports) >= 3, haproxy_ports  # the store, stats, metrics
    for listening in haproxy_ports | {dashboard}:
        assert listen_addresses(listening) == {"127.0.0.1"}, (listening, listen_addresses(listening))


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def listen_addresses(port: int) -> set[str]:
    """The addresses a TCP port listens on (IPv4 and IPv6), from /proc/net."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _colon, hex_port = fields[1].rpartition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                # /proc/net writes each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found
