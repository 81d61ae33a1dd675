"""Test databases: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from SNEAKERS23_TEST_POSTGRES_URL, or else from a throwaway server that this
session starts from the machine's PostgreSQL binaries. Where neither is possible the PostgreSQL
tests are skipped on a developer's machine, and fail in CI (CI=true): CI never skips them.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from sqlalchemy import create_engine, make_url, text

from sneakers23.db import migrate
from sneakers23.db.engine import make_engine
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings
from harness import postgres
from harness.ports import free_port

SEED = 23

pytest_plugins = ["tests.support.store_fixtures"]


# Tests of pure rules, of SQL alone, and of the sockets' channels in process (milliseconds each; the
# channels' fuzzing, seconds): they run first, so a broken rule shows in seconds, before any Ray
# cluster, store or browser starts.
CHEAP = ("tests/domain/", "tests/db/", "tests/test_layers.py", "tests/test_retries.py", "tests/test_tasks.py",
         "tests/test_checkout.py", "tests/test_group_commit.py", "tests/test_following.py", "tests/test_bench.py",
         "tests/test_mail.py", "tests/serve/test_proof_of_work.py", "tests/serve/test_render.py",
         "tests/serve/test_edge.py", "tests/serve/test_channels.py", "tests/serve/test_fuzz.py",
         "tests/serve/test_queue.py", "tests/serve/test_shoppers.py", "tests/jobs/test_scenario.py",
         "tests/jobs/test_drop_charts.py", "tests/jobs/test_rehearsal_report.py",
         "tests/jobs/test_shoppers.py", "tests/test_loop_stalls.py")  # (in process)


# `./dev test` runs the suite on two workers (pytest-xdist, `-n 2`), each group of tests on one
# worker, in the order below. The session's Ray cluster, and every test on it, on one worker, then
# the stores of test_run.py (each a Ray cluster of its own); on the other, what needs no such
# cluster: the cheap tests, the `ray up` drill's hosts, then the hostile-client tests' store,
# cluster.yaml's checks, the CLI's commands, a wheel's install. (Three workers were tried: the suite keeps both cores about 80% busy,
# so a third only made the drills time out.)
# The session's cluster is taken down as soon as its worker's last test on it is done
# (`pytest_runtest_teardown` below): idle, its three nodes and store cost 45% of a core, which the
# stores of their own after it were paying (CI49: the two-stores test took 272 s beside it, 120 s
# alone). Those stores must not meet the session cluster's last tests, which add and remove its
# nodes: CI94 ran them on the other worker, beside those tests, and a new node's cache missed its
# 10 s (and the two-stores test took 175-257 s, against 129 s after the cluster).
# The hostile-client tests measure that nobody starves: they come right after the drill (an order,
# not a wait), when the session cluster's worker usually runs its ordinary tests (a drill stalled
# by Ray's autoscaler would put them beside test_run.py's stores). CI19 ran them beside
# test_run.py's stores, and both workers slowed until two of those stores' deadlines passed.
# (Stores take turns to choose and free their ports all the same: tests/support/store_process.py.)
APART = CHEAP + ("tests/inventory/", "tests/test_ray_up.py", "tests/test_cluster_yaml.py", "tests/test_cli.py",
                 "tests/test_package.py", "tests/test_node.py", "tests/serve/test_local_cluster.py",
                 "tests/serve/test_hostile.py",
                 # (A store of its own stopped during its start: apart, last, to even the workers out.)
                 "tests/serve/test_run.py::test_a_stop_as_its_own_cluster_starts")
STORES_OF_THEIR_OWN = ("tests/serve/test_run.py",)
AFTER_THE_DRILL = ("tests/serve/test_hostile.py",)
LEAVES_A_NODE_OUT = ("tests/test_scale_out.py",)  # (the last on the session's cluster: node B is gone after it)


def worker_group(nodeid: str) -> str:
    return "apart" if nodeid.startswith(APART) else "session cluster"


def pytest_xdist_make_scheduler(config, log):
    """Each group to one worker, whole (pytest-xdist's own `loadgroup` marks no longer reach its
    scheduler under pytest 9): a scheduler by scope, whose scope is the test's group."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(items):
    """The cheap tests first, the drill right after them, and the hostile tests after it; on the
    session's cluster, the tests that take nodes away and bring new ones last, so that no other test
    meets a cluster that one of them left in the middle of a change; the stores of their own after
    that cluster."""
    def cost(item) -> tuple[bool, bool, bool, bool, bool, bool]:
        return (item.nodeid.startswith(STORES_OF_THEIR_OWN), item.get_closest_marker("reshapes_cluster") is not None,
                item.nodeid.startswith(LEAVES_A_NODE_OUT), not item.nodeid.startswith(CHEAP),
                item.get_closest_marker("hosts") is None, not item.nodeid.startswith(AFTER_THE_DRILL))

    items.sort(key=cost)


SESSION_CLUSTER = "ray_cluster"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test on this worker that uses the session's Ray cluster: the cluster taken
    down now (the store on it first, as at the session's end), not after the tests that follow."""
    result = yield
    if nextitem is not None and SESSION_CLUSTER in item.fixturenames and not _needed_later(item):
        for fixturedef in item.session._fixturemanager.getfixturedefs(SESSION_CLUSTER, item) or ():
            fixturedef.finish(item._request)  # (its dependents' teardowns run first; at the end, nothing)
    return result


def _needed_later(item) -> bool:
    """Whether a test after this one, among those its worker runs (its group), uses the cluster."""
    items = item.session.items
    later = items[items.index(item) + 1:]
    distributed = hasattr(item.config, "workerinput")  # (a pytest-xdist worker)
    return any(SESSION_CLUSTER in other.fixturenames for other in later
               if not distributed or worker_group(other.nodeid) == worker_group(item.nodeid))


FIGURES: list[str] = []


@pytest.fixture
def figures(request):
    """Lines of measured figures (stop times, recovery times) that the run prints at its end. They
    travel with the test's report, so that a worker's figures reach the run's summary."""
    lines: list[str] = []
    yield lines
    request.node.user_properties.extend(("figure", line) for line in lines)


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        FIGURES.extend(line for name, line in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def _must_run_everything() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true") or bool(os.environ.get("SNEAKERS23_REQUIRE_POSTGRES"))


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL server's maintenance database, for creating test databases."""
    given = os.environ.get("SNEAKERS23_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bindir = postgres.find_bindir()
    if bindir is None:
        reason = "no PostgreSQL server binaries here and SNEAKERS23_TEST_POSTGRES_URL is not set"
        if _must_run_everything():
            pytest.fail(reason + " (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    server = postgres.start(bindir)  # a failure to start fails the tests, everywhere
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_url):
    """A migrated database that each test's database is copied from (CREATE DATABASE … TEMPLATE)."""
    admin = create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"sneakers23_template_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_with_database(postgres_url, name))
    migrate.upgrade(engine)
    engine.dispose()
    yield admin, name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty, migrated database of each kind, new for every test."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin, template = request.getfixturevalue("postgres_template")
    name = f"sneakers23_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _with_database(request.getfixturevalue("postgres_url"), name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(database_url=database_url, max_pairs_per_product=2)


@pytest.fixture
def inventory(settings):
    """The inventory API on a freshly seeded database (both products unreleased)."""
    inventory = Inventory(settings)
    inventory.seed(random_seed=SEED)
    yield inventory
    inventory.close()


# --- Ray: one multi-node cluster for the whole session --------------------------------------------

@pytest.fixture(scope="session")
def ray_cluster():
    """A head and two worker nodes on this machine, told apart by custom resources."""
    import tempfile

    import ray
    from ray.cluster_utils import Cluster

    from sneakers23.cluster import NAMESPACE
    from sneakers23.serve.local_cluster import WORKER_PRIORITY
    from tests.support.cluster import add_node

    # A short temp dir of our own (unix socket paths are limited to 107 characters).
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="s23ray-", dir="/tmp")
    # Its workers at the store's priority: at Ray's 15, the `ray up` drill's processes beside them
    # took the CPU first (CI: a queued rehearsal's pages 2.6 s, p50).
    os.environ.update(WORKER_PRIORITY)
    dashboard_port = free_port()  # the dashboard (which takes Ray jobs)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"head": 1}, "include_dashboard": True,
                        "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port},
    )
    cluster.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    cluster.proxy_ports = {}
    nodes = {"head": cluster.head_node}
    for name in ("node_a", "node_b"):
        nodes[name] = add_node(cluster, name)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    cluster.named_nodes = nodes
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_database_url(request, tmp_path_factory):
    """The Ray tests' store runs on PostgreSQL, as a cluster does in production, wherever one can be
    had (always in CI); on a developer's machine without PostgreSQL, on SQLite."""
    try:
        server = request.getfixturevalue("postgres_url")
    except pytest.skip.Exception:
        yield f"sqlite:///{tmp_path_factory.mktemp('ray-db') / 'shop.db'}"
        return
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"sneakers23_cluster_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield _with_database(server, name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def ray_settings(ray_database_url) -> Settings:
    """A seeded database for the Ray tests, with product 1 released and a quick resync. Its
    replication goes through relays by groups of two nodes (the session's cluster has three), as a
    cluster of more than 16 nodes does by default (actors/relay.py)."""
    settings = Settings(database_url=ray_database_url, resync_seconds=1.0, cluster="none", replication_group_size=2)
    inventory = Inventory(settings)
    inventory.upgrade_schema()
    inventory.seed(random_seed=SEED)
    inventory.release(1)
    inventory.close()
    return settings


@pytest.fixture(scope="session")
def ray_store(ray_cluster, ray_settings, mailbox):
    """The store's replication running on the cluster: every node has a loaded cache. (Its release
    clock writes to the draws' entrants: to the session's mailbox, as the store's pages do.)"""
    from sneakers23.assembly import start_store_actors

    return start_store_actors(ray_settings.model_copy(update={"smtp_url": mailbox.url}), watch_seconds=0.5)
