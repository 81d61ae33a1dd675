"""The store deployed on the session's Ray cluster, plus the tools that act as shoppers.

Loaded once for the whole session (`pytest_plugins` in tests/conftest.py), so that every test
folder shares the one store."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import SEED, _must_run_everything
from tests.support.cluster import live_node_count, reseed, web_replicas_running
from harness import nodes
from harness.ports import free_port
from harness.waiting import wait_for

STORE_SECRET = "test-secret-key-0123456789-abcdefghijkl"  # the session store's secret key (cookies, cart tokens)
ADMIN_PASSWORD = "test-admin-password-0123"  # opens the session store's admin dashboard
JS = Path(__file__).resolve().parents[1] / "js"  # tests/js
CHROMIUM = os.environ.get("SNEAKERS23_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def mailbox():
    """A real SMTP server (aiosmtpd) that the session's store sends its letters to."""
    from aiosmtpd.controller import Controller

    from tests.support.mailbox import Mailbox

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.url = f"smtp://127.0.0.1:{controller.port}"
    yield box
    controller.stop()


@pytest.fixture(scope="session")
def store_url(ray_cluster, ray_store, ray_settings, mailbox):
    """The store's two Serve applications, with a proxy on every node (the head's on this port,
    the others' on `ray_cluster.proxy_ports`) and web replicas on every node, as on a real cluster."""
    port = free_port()
    args = ray_settings.model_copy(update={"secret_key": STORE_SECRET, "admin_password": ADMIN_PASSWORD,
                                           "smtp_url": mailbox.url, "public_url": f"http://127.0.0.1:{port}",
                                           # (a browser solves it at once; the sign-up tests solve it too)
                                           "proof_of_work_max_number": 2_000, "entry_proof_of_work_max_number": 2_000}
                                   ).model_dump()
    url = nodes.deploy_store(args, port)
    wait_for(lambda: web_replicas_running(live_node_count()), timeout=90, interval=0.5, what="web replicas on every node")
    for node_url in [url, *(f"http://127.0.0.1:{p}" for p in ray_cluster.proxy_ports.values())]:
        wait_for(lambda node_url=node_url: _healthy(node_url), timeout=60, what=f"the store at {node_url}")
    yield url
    nodes.remove_store()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def fresh_shop(store_url, ray_settings):
    """The original seeds again, both products unreleased, with every cache and page caught up."""
    inventory = reseed(ray_settings, SEED)
    wait_for(lambda: not any(p["released"] for p in httpx.get(f"{store_url}/api/products").json()),
             what="the pages to show the reseeded catalog")
    yield inventory
    inventory.close()


@pytest.fixture(scope="session")
def phoenix_js():
    """The official `phoenix` npm client, installed with npm from tests/js/package-lock.json."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if _must_run_everything():  # in CI, every test runs
            pytest.fail("node and npm are needed for the Phoenix client tests")
        pytest.skip("node and npm are not installed")
    # One install for both test workers: the second waits for the first's lock, then finds it done.
    with open(JS / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((JS / "node_modules" / package).exists() for package in ("phoenix", "ws", "axe-core")):
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS, check=True)
    return node


class PhoenixClient:
    """A Node process running the official client; records every line it prints."""

    SCRIPT = "phoenix_client.mjs"

    def __init__(self, node: str, url: str, topics: list[str] = (), within: list[str] = (), heartbeat_ms: int = 2000):
        """`within`: a command prefix that runs the client elsewhere (another host's namespaces).
        `heartbeat_ms`: the client's heartbeat period; a heartbeat unanswered for one period closes
        the socket and drops the replies still due (a push's reply then comes as `timeout`). Two
        seconds rides out a busy machine's stalls (CI: at 300 ms, a stall of a cart replica made
        an `add_item` time out); a test that needs a socket to a lost host noticed at once, where
        no FIN ever comes, asks for less."""
        self.process = subprocess.Popen([*within, node, str(JS / self.SCRIPT), url, *topics], cwd=JS,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "HEARTBEAT_MS": str(heartbeat_ms)})
        self.records: list[dict] = []
        import threading

        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.records.append(json.loads(line))

    def of(self, kind: str, **match) -> list[dict]:
        return [r for r in self.records if r["type"] == kind and all(r.get(k) == v for k, v in match.items())]

    def levels(self, topic: str) -> dict[int, str]:
        """Each item's level as the page shows it: a join's reply sets them all (a socket that
        reconnected re-syncs from it, and misses the pushes sent while it was away), and each
        stock_change after it updates one."""
        shown: dict[int, str] = {}
        for record in list(self.records):
            if record.get("topic") != topic:
                continue
            if record["type"] == "join_ok":
                shown = {item["id"]: item["level"] for item in record["response"].get("items", [])}
            elif record["type"] == "stock_change":
                shown[record["payload"]["item_id"]] = record["payload"]["level"]
        return shown

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class CartClient(PhoenixClient):
    """The official client driven by commands (tests/js/cart_client.mjs): joins with parameters,
    and pushes whose replies are recorded by id."""

    SCRIPT = "cart_client.mjs"
    _ids = 0

    def send(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def join(self, topic: str, **params) -> None:
        self.send(op="join", topic=topic, params=params)

    def push(self, topic: str, event: str, payload: dict) -> int:
        CartClient._ids += 1
        self.send(op="push", topic=topic, event=event, payload=payload, id=CartClient._ids)
        return CartClient._ids

    def reply(self, ref: int, timeout: float = 10) -> dict:
        wait_for(lambda: self.of("reply", id=ref), timeout=timeout, what=f"the reply to push {ref}")
        return self.of("reply", id=ref)[0]


@pytest.fixture
def cart_client(phoenix_js, store_url):
    clients = []

    def start(url: str = store_url) -> CartClient:
        client = CartClient(phoenix_js, url.replace("http://", "ws://") + "/product_socket")
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


@pytest.fixture
def phoenix_client(phoenix_js, store_url):
    clients = []

    def start(*topics: str) -> PhoenixClient:
        ws_url = store_url.replace("http://", "ws://") + "/product_socket"
        client = PhoenixClient(phoenix_js, ws_url, list(topics))
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


EXPECTED_WITHIN_MS = 15_000


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from the machine (Debian's package), driven by Playwright."""
    if not Path(CHROMIUM).exists():
        if _must_run_everything():
            pytest.fail(f"no Chromium at {CHROMIUM}: the browser tests must run in CI")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    # What a page is expected to show, it may take this long to show: a condition waited for, so a
    # passing test takes no longer. Playwright's 5 s was too short on CI's machine while the `ray up`
    # drill's hosts install and start beside it (a guest's "sign in to enter the draw", two HTTP
    # requests, was still pending after 5 s there once).
    expect.set_options(timeout=EXPECTED_WITHIN_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message))
    page.on("pageerror", lambda error: page.console_messages.append(error))
    yield page
    context.close()


class AdminClient(PhoenixClient):
    """The admin dashboard's socket through the official client and its Presence class
    (tests/js/admin_client.mjs)."""

    SCRIPT = "admin_client.mjs"

    def __init__(self, node: str, url: str, token: str):
        super().__init__(node, url, [token])

    def online(self) -> dict | None:
        """The newest presence the client synced, or None before the first."""
        synced = self.of("presence")
        return synced[-1] if synced else None


def admin_login(url: str, who: str = "Ada", password: str = ADMIN_PASSWORD) -> httpx.Client:
    """An HTTP client logged in to the admin dashboard (cookies kept)."""
    import re

    client = httpx.Client(base_url=url, timeout=10)
    form = client.get("/admin/login")
    assert form.status_code == 200, form.text
    token = re.search(r'name="form_token" value="([^"]+)"', form.text).group(1)
    answer = client.post("/admin/login", data={"who": who, "password": password, "form_token": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/", answer.text
    return client


def dashboard_tokens(client: httpx.Client) -> tuple[str, str]:
    """(the dashboard socket's token, the CSRF token) from the dashboard page."""
    import re

    page = client.get("/admin/")
    assert page.status_code == 200, page.text
    return (re.search(r'data-socket-token="([^"]+)"', page.text).group(1),
            re.search(r'data-csrf="([^"]+)"', page.text).group(1))


@pytest.fixture
def admin_client(phoenix_js, store_url):
    clients = []

    def start(token: str, url: str = store_url) -> AdminClient:
        client = AdminClient(phoenix_js, url.replace("http://", "ws://") + "/admin/socket", token)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
