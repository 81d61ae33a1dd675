"""`sneakers23 serve`, the README's run command, as users and ops run it: real processes, real
signals, a real PostgreSQL that goes down.

- A new user's store (`./dev store`): an empty SQLite file, its own Ray cluster (HAProxy in front of
  replicas that serve HTTP themselves), a pair bought in the browser. The same store then meets a
  second `serve` pointed at it (which leaves it alone), a second store of its own running beside
  it, a release from the README's second terminal reaching an open socket, and a third store that
  replaces its applications; SIGTERM to a store's process group, and SIGINT to the first, leave
  nothing.
- The database outage drill, on that second store (on a PostgreSQL of its own): PostgreSQL crashes
  in the middle of a stampede and comes back. (One store for both: each start is half a minute of
  CPU, issue 22.)
- A store stopped during its start-up, and one started at once on its port, leave nothing either.

Every store here is found and stopped by its process id and sessions, never by name.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client

from tests.conftest import _must_run_everything
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from harness import postgres, shop
from harness.ports import free_port
from tests.support.shoppers import shopper_client
from tests.support.store_process import SNEAKERS23, StoreProcess, clean_env, cli
from harness.waiting import wait_for

STOP_WITHIN_S = 10.0


@pytest.fixture
def ray_tmpdir():
    """Ray's files for the stores of one test (short: Ray's socket paths have a limit)."""
    path = tempfile.mkdtemp(prefix="s23run-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stores():
    """Every store a test starts; whatever happens, none outlives it."""
    started: list[StoreProcess] = []
    yield started
    for store in started:
        store.kill_what_is_left()


def sqlite_env(directory: Path, ray_tmpdir: str) -> dict:
    return clean_env(RAY_TMPDIR=ray_tmpdir, SNEAKERS23_DATABASE_URL=f"sqlite:///{directory / 'sneakers23.db'}")


def join_product(url: str, product_id: int, timeout: float = 30) -> dict:
    """A shopper's socket joins a product's channel; returns the join reply's response."""
    with websockets.sync.client.connect(f"ws{url[4:]}product_socket/websocket?vsn=2.0.0", open_timeout=timeout) as ws:
        ws.send(json.dumps(["1", "1", f"product:{product_id}", "phx_join", {}]))
        reply = json.loads(ws.recv(timeout=timeout))
    assert reply[3] == "phx_reply" and reply[4]["status"] == "ok", reply
    return reply[4]["response"]


def released(url: str) -> list[bool]:
    return [product["released"] for product in httpx.get(f"{url}api/products", timeout=10).json()]


def stopped_during_start_up(store, moment: str) -> None:
    wait_for(lambda: moment in store.output(), timeout=120, interval=0.05, what=moment)
    store.note_what_runs()
    store.stop(signal.SIGTERM, group=True, timeout=STOP_WITHIN_S)
    assert store.process.returncode == 0, store.output()
    assert "is open at" not in store.output()
    assert not store.left_listening


def test_a_stop_as_its_own_cluster_starts_or_just_after_takes_down_what_was_started(tmp_path, ray_tmpdir, stores):
    port = free_port()
    store = StoreProcess(["--port", str(port)], sqlite_env(tmp_path, ray_tmpdir), tmp_path).start()
    stores.append(store)
    stopped_during_start_up(store, "starting a Ray cluster of its own")
    # At once, a store on the same port gets past its check that the port is free, and is stopped
    # later in its start-up, its Ray cluster just up.
    again = StoreProcess(["--port", str(port)], sqlite_env(tmp_path, ray_tmpdir), tmp_path).start()
    stores.append(again)
    stopped_during_start_up(again, "Ray cluster at")


@pytest.mark.timeout(900)  # (three stores, a browser, the outage drill's stampede and the queue-limit check)
def test_the_readmes_store_sells_in_the_browser_a_second_serve_leaves_it_alone_or_replaces_it_and_two_run_side_by_side(
        tmp_path, ray_tmpdir, stores, crashable_postgres, page, figures):
    """`./dev store` as a new user runs it (`serve --release 1` on a new SQLite file): the shopper
    adds a size, checks out, and has an order. A second `serve` pointed at its cluster leaves it
    alone; a second store of its own runs beside it, on PostgreSQL, and sells through the database
    outage drill; a release from the README's second terminal reaches an open socket of the right
    store; a third store replaces the first's applications when asked (and answers 503 past its
    queue limit); Ctrl-C and SIGTERM take everything down. (One store for the README and the first
    of the two, one for the second and the drill: each start is half a minute of CPU.)"""
    dev = (Path(__file__).resolve().parents[2] / "dev").read_text()
    assert 'serve --release 1 "$@"' in dev  # what the README's first command runs
    first_dir, second_dir, third_dir = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    for directory in (first_dir, second_dir, third_dir):
        directory.mkdir()
    # Serve holds a replaced store's ingress replicas for 30 s, for load balancers outside the
    # cluster to take them out; here HAProxy is the only one, and the third store's pages are
    # waited for below.
    first_env = {**sqlite_env(first_dir, ray_tmpdir), "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3"}
    # The second store sells from a PostgreSQL of its own, which crashes in its outage drill. The
    # drill's thousands of buyers all come from this machine's one address: the edge's per-address
    # caps (which would turn most of them away with 429) are lifted, as for a rehearsal.
    server = crashable_postgres  # (None without PostgreSQL's binaries, outside CI: SQLite, and no drill)
    second_database = server.url if server else f"sqlite:///{second_dir / 'sneakers23.db'}"
    second_env = clean_env(RAY_TMPDIR=ray_tmpdir, SNEAKERS23_DATABASE_URL=second_database,
                           SNEAKERS23_REQUESTS_PER_ADDRESS_PER_SECOND="0", SNEAKERS23_CONNECTIONS_PER_ADDRESS="0")
    # The third store's sales take 2 waiting purchases of a product: it answers the others 503 (below).
    third_env = {**sqlite_env(third_dir, ray_tmpdir), "RAY_AUTH_MODE": "token", "SNEAKERS23_SALES_QUEUE_LIMIT": "2"}
    first_port, second_port = free_port(), free_port()
    first = StoreProcess(["--release", "1", "--port", str(first_port)], first_env, first_dir).start()
    stores.append(first)
    first_url = first.wait_open()
    assert first_url == f"http://127.0.0.1:{first_port}/"
    assert "seeded 26 items into an empty database" in first.output()
    assert "product 1 released" in first.output()

    listing = httpx.get(first_url, timeout=10)
    assert listing.status_code == 200 and "<title>Sneakers23</title>" in listing.text
    assert listing.headers["cache-control"] == "no-store, must-revalidate"
    assert "product-soon-2" in listing.text

    # No admin password set: the admin pages are off, and say how to turn them on.
    off = httpx.get(f"{first_url}admin/", timeout=10)
    assert off.status_code == 404 and "set SNEAKERS23_ADMIN_PASSWORD" in off.text
    assert httpx.post(f"{first_url}admin/actions", json={}, timeout=10).json()["error"] == "off"
    assert "the admin dashboard is off: set SNEAKERS23_ADMIN_PASSWORD" in first.output()

    page.goto(first_url)
    page.wait_for_function("() => window.sneakers23 && window.sneakers23.cart() && window.sneakers23.cart().state === 'joined'")
    size = page.locator('[data-sizes-for="1"] .size-container__entry:not([disabled])').first
    size.click()
    page.wait_for_selector(".cart__title:has-text('Cart 1')")
    page.click(".cart__checkout")
    page.click("[data-purchase]")
    page.wait_for_selector("h2:has-text('Order Complete!')")
    bought = Inventory(Settings(database_url=first_env["SNEAKERS23_DATABASE_URL"]))
    try:
        assert shop.order_count(bought) == 1
    finally:
        bought.close()
    shopper = shopper_client(first_url)  # the shopper's cookie, signed with the first store's key

    # Pointed at the first store's cluster, a second `serve` says where that store is and stops.
    # (Ray presents its token to an address it is given only in token mode: README, "Running the store".)
    joined = cli("serve", "--address", first.cluster_address, "--port", str(second_port),
                 env=third_env, cwd=third_dir)
    assert joined.returncode == 1, joined.stdout + joined.stderr
    assert (f"a store already runs on the Ray cluster at {first.cluster_address}, open at {first_url}, "
            f"selling from sqlite:///{first_dir / 'sneakers23.db'}") in joined.stderr
    assert "--replace" in joined.stderr
    assert not (third_dir / "sneakers23.db").exists(), "it touched nothing, not even its own database"
    # Asked to replace it on another port, it says the cluster's proxy listens elsewhere.
    moved = cli("serve", "--address", first.cluster_address, "--replace", "--port", str(second_port),
                env=third_env, cwd=third_dir)
    assert moved.returncode == 1
    assert f"already listens on 127.0.0.1:{first_port} and cannot move to 127.0.0.1:{second_port}" in moved.stderr

    # The first store is as it was: the shopper's cookie still buys, from the first store's database.
    items = json.loads(cli("products", "--json", env=first_env, cwd=first_dir).stdout)[0]["items"]
    item = next(item for item in items if item["available_count"] > 0)  # (a size may be seeded sold out)
    orders_of_item = "SELECT count(*) FROM orders WHERE item_id = ?"
    with sqlite3.connect(first_dir / "sneakers23.db") as database:
        (before,) = database.execute(orders_of_item, (item["id"],)).fetchone()  # (the browser's may be of it)
    bought = shopper.post(f"/api/items/{item['id']}/purchase")
    assert bought.status_code == 200, bought.text
    with sqlite3.connect(first_dir / "sneakers23.db") as database:
        assert database.execute(orders_of_item, (item["id"],)).fetchone() == (before + 1,)
    assert first.process.poll() is None and "replaced" not in first.output()

    # A second store of its own runs beside the first: its own cluster, ports and database.
    second = StoreProcess(["--port", str(second_port)], second_env, second_dir).start()
    stores.append(second)
    second_url = second.wait_open()
    assert second.cluster_address != first.cluster_address
    assert not first.ports & second.ports, "no port shared, HAProxy's own included"
    # The chosen request path: HAProxy in front of each (waited for: Serve starts a new HAProxy when
    # it reloads its routes, and CI40 looked in between, on a busy machine).
    wait_for(lambda: "haproxy" in first.names() and "haproxy" in second.names(), timeout=30,
             what="HAProxy in front of each store")
    def first_listens() -> bool:
        first.note_what_runs()  # (its processes' ports, looked at again: HAProxy may have been started anew)
        return first_port in first.ports

    wait_for(first_listens, timeout=30, what="the first store's HAProxy listening on its port")
    # Its replicas, caches and sales actors (Ray workers) at the niceness of its other processes, not
    # Ray's 15: any busy process of normal priority beside them took the CPU first.
    niceness = first.niceness()
    workers = {nice for name, values in niceness.items() if name.startswith("ray::") for nice in values}
    assert workers == {0} and niceness["haproxy"] == {0}, niceness
    assert cli("release", "2", env=second_env, cwd=second_dir).returncode == 0
    wait_for(lambda: released(second_url) == [False, True], what="the second store to show product 2 released")
    assert released(first_url) == [True, False]
    assert shopper.get("/healthz").status_code == 200
    # The commands of each terminal find their own store among the clusters on this machine (the
    # second one's is the latest started, and the test session's runs too).
    for env, directory, mine, theirs in ((first_env, first_dir, first_url, second_url),
                                         (second_env, second_dir, second_url, first_url)):
        status = cli("status", env=env, cwd=directory)
        assert status.returncode == 0, status.stderr
        assert httpx.get(f"{mine}healthz").json()["node_id"][:12] in status.stdout
        assert httpx.get(f"{theirs}healthz").json()["node_id"][:12] not in status.stdout

    # The README's second terminal, as it is: no address given, beside two other Ray clusters (the
    # second store's, the latest started, and the test session's). The command finds the one whose
    # store sells from its database, and the release reaches a socket open on the first store.
    with websockets.sync.client.connect(f"ws://127.0.0.1:{first_port}/product_socket/websocket?vsn=2.0.0",
                                        open_timeout=30) as socket_on_first:
        socket_on_first.send(json.dumps(["1", "1", "product:2", "phx_join", {}]))
        reply = json.loads(socket_on_first.recv(timeout=30))
        assert reply[3] == "phx_reply" and reply[4]["status"] == "ok"
        assert reply[4]["response"]["released"] is False
        release = cli("release", "2", env=first_env, cwd=first_dir)
        assert release.returncode == 0, release.stderr
        assert release.stdout.startswith("product 2 released")
        push = json.loads(socket_on_first.recv(timeout=30))
        assert push[:4] == [None, None, "product:2", "released"]
        assert 'class="size-container__entry' in push[4]["size_html"]
    assert 'data-sizes-for="2"><div class="size-container" role="group"' in httpx.get(first_url).text

    assert "haproxy" in second.names() and "raylet" in second.names()
    assert httpx.get(f"{second_url}healthz", timeout=10).status_code == 200
    if server is not None:
        figures.append(outage_drill(second_url, second_env, second_dir, server, second.cluster_address))
    else:
        figures.append("the database outage drill was left out: no PostgreSQL server binaries here")
    took = second.stop(signal.SIGTERM, group=True, timeout=STOP_WITHIN_S)
    assert second.process.returncode == 0, second.output()
    assert not second.left_listening, "ports still held"
    figures.append(f"serve: SIGTERM to the process group, everything gone in {took:.1f} s")
    # (A store started at once on the same port, and stopped during its start-up: the test above.)

    # Asked to, a store takes the place of the one on a cluster it joins; the replaced store says
    # so, and keeps the cluster up; the newcomer's stop takes away only what it deployed.
    third = StoreProcess(["--address", first.cluster_address, "--replace"], third_env, third_dir).start()
    stores.append(third)
    assert third.wait_open() == first_url
    assert "replacing the store on the Ray cluster" in third.output()
    wait_for(lambda: released(first_url) == [False, False], what="the pages to come from the third store's database")
    wait_for(lambda: "were replaced by someone else" in first.output(), what="the first store to say so")
    past_its_queue_limit_a_purchase_is_answered_503_busy_with_retry_after(first_url, third_env, third_dir)
    third.stop(signal.SIGINT, group=False, timeout=STOP_WITHIN_S)
    assert third.process.returncode == 0, third.output()
    assert "its applications leave the cluster once Serve has drained them" in third.output()
    assert first.process.poll() is None, "the first store still runs its cluster"

    seconds = first.stop(signal.SIGINT, group=False, timeout=STOP_WITHIN_S)  # Ctrl-C, as `kill -INT PID`
    assert first.process.returncode == 0, first.output()
    assert "closing the store" in first.output()
    assert not first.left_listening and not second.ports_still_held(), "every port it held is free"
    figures.append(f"serve: SIGINT to the process, everything gone in {seconds:.1f}s")


def past_its_queue_limit_a_purchase_is_answered_503_busy_with_retry_after(url: str, env: dict, directory: Path):
    """Backpressure through HTTP (on the two-stores test's third store, started for it with
    SNEAKERS23_SALES_QUEUE_LIMIT=2): its sales take 2 waiting purchases of a product, with the
    database stalled; the purchases past them are answered at once, and sell when asked again."""
    hot = 3  # product 1's size 7
    for command in (["release", "1"], ["restock", str(hot), "20"]):
        done = cli(*command, env=env, cwd=directory)
        assert done.returncode == 0, done.stderr
    wait_for(lambda: f'value="{hot}" disabled' not in httpx.get(url).text and released(url)[0],
             what="size 7 on sale on the page")
    database = Inventory(Settings(database_url=env["SNEAKERS23_DATABASE_URL"], cluster="none"))
    # A purchase of another size first: it starts product 1's sales actor (a new Ray worker, seconds
    # on a busy machine: CI35's four past the queue waited for it past 10 s), so the six below
    # meet the actor's queue, not its start.
    other = next(item["id"] for item in httpx.get(f"{url}api/products", timeout=10).json()[0]["items"]
                 if item["id"] != hot and item["level"] != "out")
    warm = shopper_client(url, timeout=120).post(f"/api/items/{other}/purchase")
    assert warm.status_code == 200, warm.text
    shoppers = [shopper_client(url, timeout=60) for _ in range(6)]  # each has its cookie
    answers: dict[int, httpx.Response] = {}

    def buy(number: int) -> None:
        answers[number] = shoppers[number].post(f"/api/items/{hot}/purchase",
                                                headers={"Idempotency-Key": f"busy-{number}"})

    with shop.database_stalled(database, hot):
        buyers = [threading.Thread(target=buy, args=(number,)) for number in range(6)]
        for buyer in buyers:
            buyer.start()
        wait_for(lambda: len(answers) == 4, what="the four past the queue to be answered")
        turned_away = dict(answers)
    for buyer in buyers:
        buyer.join(60)
    assert {(r.status_code, r.json()["error"], r.headers["retry-after"]) for r in turned_away.values()} \
        == {(503, "busy", "1")}
    assert sorted(r.status_code for n, r in answers.items() if n not in turned_away) == [200, 200], \
        "the two in the queue sold once the database answered"
    for number in turned_away:
        again = shoppers[number].post(f"/api/items/{hot}/purchase", headers={"Idempotency-Key": f"busy-{number}"})
        assert again.status_code == 200, again.text
    assert shop.order_count(database, item_id=hot) == 6
    database.close()


@pytest.fixture
def crashable_postgres():
    """A PostgreSQL server of the test's own, durable (fsync on), to crash and start again; None on a
    developer's machine without PostgreSQL's binaries (CI has them: there it fails)."""
    bindir = postgres.find_bindir()
    if bindir is None:
        if _must_run_everything():
            pytest.fail("no PostgreSQL server binaries here: CI must run the database outage drill")
        yield None
        return
    server = postgres.start(bindir, durable=True)
    yield server
    server.stop()


def order_total(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM orders")).scalar_one()
    finally:
        engine.dispose()


def cache_lags(env: dict, cwd: Path) -> list[int] | None:
    """Every node cache's lag behind the database, from `sneakers23 status`."""
    status = cli("status", env=env, cwd=cwd)
    if status.returncode != 0:
        return None
    rows = [line.split() for line in status.stdout.splitlines()[3:] if not line.startswith(("sales ", "channels "))]
    return [int(row[5]) for row in rows if len(row) > 5 and row[5].lstrip("-").isdigit()]


BUYERS = 1200  # enough for the drop to outlast the start of the outage (its buyers then wait it out)


def outage_drill(url: str, env: dict, directory: Path, server, cluster_address: str) -> str:
    """PostgreSQL crashes in the middle of a stampede on the store at `url`, and comes back: pages,
    the API and channels keep answering from memory, purchases are turned away at once with a time
    to come back, the drop sells again within 2 s of the database's return, and its invariants hold.
    Returns the figures."""
    on_cluster = {**env, "SNEAKERS23_CLUSTER": cluster_address, "RAY_AUTH_MODE": "token"}
    assert cli("release", "1", env=on_cluster, cwd=directory).returncode == 0
    catalog = json.loads(cli("products", "--json", env=env, cwd=directory).stdout)
    items = [item["id"] for item in catalog[0]["items"] if item["available_count"] > 0]

    report_file = directory / "report.json"
    stampede = subprocess.Popen(
        [str(SNEAKERS23), "drop", "stampede", "--buyers", str(BUYERS), "--concurrency", "20", "--via", "http",
         "--url", url.rstrip("/"), "--items", ",".join(map(str, items)), "--report", str(report_file)],
        env=on_cluster, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stampede_said: list[str] = []
    threading.Thread(target=lambda: stampede_said.extend(stampede.stdout), daemon=True).start()
    try:
        wait_for(lambda: order_total(server.url) >= 20, timeout=120, interval=0.05, what="the drop to be selling")
        probe = shopper_client(url)

        server.stop_immediately()
        went_down = time.monotonic()
        # Shoppers still see the store: pages, the API and channels, all from memory.
        assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(f"{url}api/products", timeout=5).status_code == 200
        assert join_product(url, 1, timeout=5)["released"] is True
        # Purchases are turned away at once, with a time to come back: the probe's sizes have stock,
        # so only the database could refuse them, and it is away (nothing is sold: the drop's
        # invariants below count every order).
        answers = []
        while time.monotonic() - went_down < 3.0:
            asked = time.perf_counter()
            refused = probe.post(f"/api/items/{items[len(answers) % len(items)]}/purchase")
            answers.append(time.perf_counter() - asked)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1" and refused.json()["error"] == "unavailable"
        assert max(answers) < 1.0, f"a purchase waited {max(answers):.2f}s for a database that is down"

        assert stampede.poll() is None, "the drop ended before the database came back: give it more buyers"
        server.start_again()  # returns once PostgreSQL accepts connections
        back = time.monotonic()
        orders_when_back = order_total(server.url)
        wait_for(lambda: order_total(server.url) > orders_when_back, timeout=10, interval=0.02,
                 what="the drop to sell again")
        sold_after = time.monotonic() - back
        assert sold_after <= 2.0, sold_after

        assert stampede.wait(300) == 0, "".join(stampede_said)
    finally:
        if stampede.poll() is None:
            stampede.kill()
    report = json.loads(report_file.read_text())
    assert report["ok"], report["invariants"]  # nothing sold twice, nothing lost, orders = pairs sold
    assert report["attempts"] == BUYERS and report["errors"] == 0
    assert report["retries"] > 0, "some buyers met the outage and asked again"
    assert report["sold"] + sum(report["refusals"].values()) == BUYERS

    # The caches catch up with the database, and the pages show its levels.
    wait_for(lambda: cache_lags(on_cluster, directory) == [0], timeout=30, interval=0.5,
             what="the node cache to be level with the database")
    in_database = json.loads(cli("products", "--json", env=env, cwd=directory).stdout)[0]["items"]
    levels = {item["id"]: item["level"] for item in in_database}
    shown = {item["id"]: item["level"] for item in httpx.get(f"{url}api/products").json()[0]["items"]}
    assert shown == levels
    return (f"outage drill: purchases refused in at most {max(answers) * 1000:.0f} ms while PostgreSQL was "
            f"down; back up: the drop sold again {sold_after:.2f}s after it accepted connections; "
            f"{report['retries']} purchases retried, {report['sold']} sold, invariants hold")
