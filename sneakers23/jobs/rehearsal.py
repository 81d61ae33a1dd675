"""A whole drop, rehearsed (`sneakers23 drop rehearse SCENARIO`): the scenario's shoppers arrive
around a release the rehearsal schedules, through the store's own doors (jobs/shoppers.py), and the
rehearsal ends with three files that agree: the JSON report, its invariants checked against the
database (jobs/rehearsal_report.py); the event log (Parquet); and the HTML report drawn from that
log (jobs/drop_charts.py).
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sneakers23.domain.admin import ActionKind, AdminAction
from sneakers23.domain.drops import DropMode
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.jobs import drop_charts, event_log
from sneakers23.jobs.rehearsal_report import RehearsalReport, drop_report, machines, with_the_draw, with_the_queue
from sneakers23.jobs.scenario import Queue, Scenario
from sneakers23.jobs.buyers import RETRY_FOR_S, retry_after
from sneakers23.jobs.shoppers import RELEASE_LATE_S, Plan, choose_sizes

STAFF = "rehearsal@cli"
SET_UP_S = 3.0  # from the release time fixed (the shoppers' actors up, the drop's mode set) to the first arrival
STALLS_EVERY_S = 5.0
SHOPPERS_PER_ACTOR = 1_000  # past this many a node, a second actor (a second core's share of the work)
SIGNED_IN = ("queue", "draw")  # the modes whose shoppers must be signed in
OWN_PACE_WAIT_S = 600.0  # a queue at the store's own pace: the longest a shopper waits in line past the release


@dataclass
class Files:
    json: Path
    log: Path
    html: Path


def loopback_sources(url: str) -> list[str] | None:
    """For a store on this machine: its shoppers send from 127.0.0.2 … 127.0.0.254, in turn, as
    many people would from their own addresses (the edge caps what one address may open and ask)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return [f"127.0.0.{n}" for n in range(2, 255)] if host.startswith("127.") or host == "localhost" else None


def files_in(directory: Path) -> Files:
    return Files(directory / "rehearsal.json", directory / "rehearsal.parquet", directory / "rehearsal.html")


def plans(scenario: Scenario, weights: dict[int, float], release_at: float, rng: random.Random) -> list[Plan]:
    """Each shopper's part: when it arrives (evenly over the windows before and after the release),
    which sizes it wants, and what it does on the way."""
    arrivals, behaviour = scenario.arrivals, scenario.behaviour
    early = round(scenario.shoppers * arrivals.share_before)
    made = []
    for number in range(scenario.shoppers):
        if number < early:
            arrive_at = release_at - arrivals.before_release_s * (1 - (number + 0.5) / early)
        else:
            late = scenario.shoppers - early
            arrive_at = release_at + arrivals.after_release_s * (number - early + 0.5) / late
        before_release = arrive_at < release_at
        leaves = before_release and rng.random() < behaviour.leave
        reloads = before_release and not leaves and rng.random() < behaviour.reload
        presses_early = scenario.mode == "queue" and rng.random() < (scenario.queue or Queue()).press_before_turn
        made.append(Plan(
            number=number, arrive_at=arrive_at, buy_now=rng.random() < behaviour.buy_now, presses_early=presses_early,
            sizes=choose_sizes(rng, weights), another_size=rng.random() < behaviour.when_sold_out.another_size,
            most_sizes=behaviour.when_sold_out.most_sizes,
            reload_at=rng.uniform(arrive_at, release_at) if reloads else None,
            leave_at=rng.uniform(arrive_at, release_at) if leaves else None))
    rng.shuffle(made)  # (the early and the late spread over every actor)
    return made


def size_weights(scenario: Scenario, product) -> dict[int, float]:
    by_size = {item.size: item.id for item in product.items}
    if scenario.behaviour.sizes is None:
        return {item.id: 1.0 for item in product.items}
    if unknown := [size for size in scenario.behaviour.sizes if size not in by_size]:
        raise Sneakers23Error(f"field behaviour.sizes: product {product.id} has no size {', '.join(unknown)} "
                              f"(its sizes: {', '.join(by_size)})")
    return {item_id: scenario.behaviour.sizes.get(size, 0.0) for size, item_id in by_size.items()}


def product_to_drop(inventory: Inventory, scenario: Scenario):
    """The scenario's product, as the database has it: one not on sale yet (the rehearsal releases
    it). Raises Sneakers23Error naming the field, before any shopper starts."""
    product = next((p for p in inventory.complete_products() if p.id == scenario.product), None)
    if product is None:
        raise Sneakers23Error(f"field product: there is no product {scenario.product}")
    if product.released:
        raise Sneakers23Error(f"field product: product {product.id} is on sale already (a rehearsal releases its "
                              "product: seed the shop again, or name another)")
    size_weights(scenario, product)
    return product


def _set_up(inventory: Inventory, scenario: Scenario) -> None:
    """The staff's actions a drop needs before its release is scheduled, audited as theirs are:
    first come with guests welcome, a queue for signed-in shoppers at the scenario's pace, or a
    draw for signed-in shoppers (its close: the release)."""
    product = scenario.product
    if scenario.mode == "queue":
        pace = scenario.queue.admit_per_minute if scenario.queue is not None else None
        actions = [AdminAction(ActionKind.SET_DROP_MODE, product_id=product, mode=DropMode.QUEUE),
                   AdminAction(ActionKind.REQUIRE_SIGN_IN, product_id=product),
                   AdminAction(ActionKind.SET_QUEUE_PACE, product_id=product, pace=pace)]
    elif scenario.mode == "draw":
        actions = [AdminAction(ActionKind.SET_DROP_MODE, product_id=product, mode=DropMode.DRAW),
                   AdminAction(ActionKind.REQUIRE_SIGN_IN, product_id=product)]
    else:
        actions = [AdminAction(ActionKind.SET_DROP_MODE, product_id=product, mode=DropMode.FIRST_COME),
                   AdminAction(ActionKind.ALLOW_GUESTS, product_id=product)]
    for action in actions:
        _act(inventory, scenario, action)


def _schedule(inventory: Inventory, scenario: Scenario, release_at: float) -> None:
    _act(inventory, scenario, AdminAction(ActionKind.SCHEDULE, product_id=scenario.product,
                                          at=datetime.fromtimestamp(release_at, timezone.utc)))


def _act(inventory: Inventory, scenario: Scenario, action: AdminAction) -> None:
    entry = inventory.act(STAFF, action, client="cli")
    if not entry.ok:
        raise Sneakers23Error(f"product {scenario.product}: {entry.result}")


def rehearse(inventory: Inventory, scenario: Scenario, url: str, directory: Path,
             sources: list[str] | None = None, progress=None, socket_url: str | None = None) -> RehearsalReport:
    """Run the scenario against the store at `url` (on the cluster this process has joined), and
    write its three files into `directory`. Returns the report."""
    product = product_to_drop(inventory, scenario)
    weights = size_weights(scenario, product)
    if scenario.seed is None:  # (drawn, and kept in the report: the same crowd can be drawn again)
        scenario = scenario.model_copy(update={"seed": random.SystemRandom().randrange(2 ** 32)})
    with _accounts(inventory, scenario, url) as sessions:
        run = _run(inventory, scenario, weights, url, sources or loopback_sources(url), socket_url or url, sessions,
                   progress)
    results, release_at, ended_at, before, after, stalls = run
    rows = [event_log.Row(*row) for result in results for row in result["rows"]]
    nodes = [result["node"] for result in results for _row in result["rows"]]
    report = drop_report(rows, release_at, ended_at, before, after, inventory.settings.max_pairs_per_product)
    report.shoppers_cpu_s = sum(result["cpu_s"] for result in results)
    report.machines = machines(results)
    if scenario.mode == "queue":
        with_the_queue(report, rows, release_at, inventory.sold_outside_turns(product.id))
    elif scenario.mode == "draw":
        with_the_draw(report, rows)
    report.channel_replicas = stalls
    facts = {"product": product.id, "scenario": scenario.model_dump(), "release_at": release_at,
             "release_time": datetime.fromtimestamp(release_at, timezone.utc).isoformat(timespec="milliseconds"),
             "ended_at": ended_at, "report": report.to_dict(),
             "sizes": {str(item.id): {"size": item.size, "before": before.counts[item.id]} for item in product.items}}
    _write(files_in(directory), report, rows, nodes, facts)
    return report


def _run(inventory: Inventory, scenario: Scenario, weights: dict[int, float], url: str, sources: list[str] | None,
         socket_url: str, sessions: list[str] | None, progress) -> tuple:
    """The shoppers' actors on every node, the staff's set-up and the scheduled release, then every
    shopper's visit: (the actors' results, the release time, the end, the stock before and after,
    the channel replicas' stalls). The actors are killed however it ends."""
    import ray
    from ray.exceptions import RayError

    rng = random.Random(scenario.seed)
    wait_in_line_s = _wait_in_line_s(scenario)
    actors = []
    try:
        actors = _shoppers_on_every_node(scenario, url, sources, socket_url, wait_in_line_s)
        ray.get([actor.ready.remote() for actor in actors], timeout=120)
        before = inventory.audit()
        _set_up(inventory, scenario)
        # (fixed once all else is ready: a slow start never eats into the window before the release)
        release_at = time.time() + SET_UP_S + scenario.arrivals.before_release_s
        made = plans(scenario, weights, release_at, rng)
        if sessions is not None:  # (each shopper signed in to an account of its own)
            made = [dataclasses.replace(plan, session=sessions[plan.number]) for plan in made]
        _schedule(inventory, scenario, release_at)
        calls = [actor.run.remote(made[k::len(actors)], release_at) for k, actor in enumerate(actors)]
        stalls: dict[str, dict] = {}
        deadline = time.monotonic() + (max(plan.arrive_at for plan in made) - time.time()) + wait_in_line_s + \
            scenario.behaviour.when_sold_out.most_sizes * 2 * RETRY_FOR_S + scenario.linger_s + 60
        results = _wait(actors, calls, scenario.shoppers, progress, stalls, deadline)
        return results, release_at, time.time(), before, inventory.audit(), stalls
    except RayError as error:
        raise Sneakers23Error(f"the rehearsal's shoppers failed: {type(error).__name__} (on a node that went "
                              "away, or out of memory): nothing was written") from None
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # (gone with its node already)
                pass


@contextmanager
def _accounts(inventory: Inventory, scenario: Scenario, url: str):
    """The shoppers' signed session cookies, for the modes that need them (None for first come); every
    session of the rehearsal's accounts ends when it does, however it ends (their cookies went
    through Ray's object store, and may be on a disk)."""
    if scenario.mode not in SIGNED_IN:
        yield None
        return
    label = f"rehearsal-{secrets.token_hex(4)}"
    try:
        yield _signed_in(inventory, scenario, label, url)
    finally:
        try:
            inventory.end_rehearsal_sessions(label)
        except Exception as error:  # (never hides what ended the rehearsal: said, with what to do)
            print(f"sneakers23: the sessions of the rehearsal's accounts ({label}-N@rehearsal.invalid) could not "
                  f"be ended: {error}; end their sessions by hand (the account_sessions of those accounts)",
                  file=sys.stderr)


def _signed_in(inventory: Inventory, scenario: Scenario, label: str, url: str) -> list[str]:
    """A signed session cookie for each shopper, of an account of its own made for this rehearsal
    (verified, signed in: the sign-up and sign-in pages are not rehearsed, bench/accounts.py
    measures them); the store asked first whether it takes them (it does with the same key)."""
    from sneakers23.serve.shoppers import SessionCookies

    key = inventory.settings.secret_key
    if not key:
        raise Sneakers23Error(f"a {scenario.mode}'s shoppers are signed in with the store's secret key: set "
                              "SNEAKERS23_SECRET_KEY (or put it in sneakers23.env) to the store's, for both")
    cookies = [SessionCookies(key).cookie(token) for token in inventory.rehearsal_sessions(scenario.shoppers, label)]
    if not _signed_in_at(url, cookies[0]):
        raise Sneakers23Error(f"the store at {url} did not take the rehearsal's sign-in: its secret key is not this "
                              "SNEAKERS23_SECRET_KEY (give the store and the rehearsal the same)")
    return cookies


def _signed_in_at(url: str, cookie: str, tries: int = 5) -> bool:
    """Whether the store's account page opens with this session cookie: True, or False when it sends
    to the sign-in page. Asked again after a 429 or 503 (as told, within reason); any other answer,
    or none, stops the rehearsal in one line."""
    import http.client
    import urllib.error
    import urllib.request

    from sneakers23.serve.shoppers import SESSION_COOKIE

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args, **_kwargs):
            return None  # (a redirect is the answer)

    request = urllib.request.Request(f"{url}/account", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    for _try in range(tries):
        try:
            with urllib.request.build_opener(Stay).open(request, timeout=30) as answer:
                return answer.status == 200
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400 and (error.headers.get("Location") or "").endswith("/account/login"):
                return False
            if error.code not in (429, 503):
                raise Sneakers23Error(f"the store at {url} answered {error.code} to its account page") from None
            time.sleep(max(0.0, min(retry_after(error.headers.get("Retry-After")), 10.0)))  # (a date or nonsense: its default)
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise Sneakers23Error(f"the store at {url} does not answer ({type(error).__name__})") from None
    raise Sneakers23Error(f"the store at {url} is too busy to answer its account page: try again")


def _wait_in_line_s(scenario: Scenario) -> float:
    """How long after the release a shopper waits for its turn before giving up: the whole line's
    time at the scenario's pace; at the store's own pace (every pair left offered within a minute)
    the pairs are gone long before."""
    if scenario.mode != "queue":
        return RELEASE_LATE_S
    pace = scenario.queue.admit_per_minute if scenario.queue is not None else None
    return RELEASE_LATE_S + (scenario.shoppers * 60 / pace if pace else OWN_PACE_WAIT_S)


def _shoppers_on_every_node(scenario: Scenario, url: str, sources: list[str] | None, socket_url: str,
                            wait_in_line_s: float) -> list:
    """The shoppers' actors, pinned to every live node: one each, two past SHOPPERS_PER_ACTOR a node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sneakers23.jobs.shoppers import Shoppers

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    per_node = 2 if scenario.shoppers > len(nodes) * SHOPPERS_PER_ACTOR else 1
    return [Shoppers.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(url, scenario.product, scenario.linger_s, sources, socket_url, scenario.mode, wait_in_line_s)
            for node in nodes for _ in range(per_node)]


def _write(paths: Files, report: RehearsalReport, rows: list, nodes: list[str], facts: dict) -> None:
    paths.json.parent.mkdir(parents=True, exist_ok=True)
    paths.json.write_text(json.dumps(report.to_dict(), indent=2))
    event_log.write(paths.log, rows, nodes, facts)
    # (drawn from the file just written, as `drop report` draws it: the same log, the same page)
    paths.html.write_text(drop_charts.render(event_log.read(paths.log)))


def _wait(actors, calls, total: int, progress, stalls: dict, deadline: float) -> list[dict]:
    """The actors' results, once all are in; meanwhile the progress, and each channel replica's
    longest loop stall and full collection (`stalls`, by node: they say their last minute's, asked
    every few seconds)."""
    import ray

    from sneakers23.serve.deploy import channel_replicas

    pending, results, asked = list(calls), [], 0.0
    while pending:
        if time.monotonic() > deadline:
            raise Sneakers23Error(f"{len(pending)} of the shoppers' actors had not finished by the rehearsal's "
                                  "deadline (every shopper's longest visit): nothing was written")
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        results += ray.get(done)
        if progress is not None:
            counts = ray.get([actor.progress.remote() for actor in actors]) if pending else [(total, total)]
            progress(sum(arrived for arrived, _ in counts), sum(finished for _, finished in counts))
        if time.monotonic() - asked > STALLS_EVERY_S or not pending:
            asked = time.monotonic()
            for replica in channel_replicas(timeout_s=5):
                seen = stalls.setdefault(replica["node_id"], {"loop_stall_ms": 0.0, "full_collection_ms": 0.0,
                                                              "sockets_most": 0})
                seen["loop_stall_ms"] = max(seen["loop_stall_ms"], replica["loop_stall_ms"])
                seen["full_collection_ms"] = max(seen["full_collection_ms"], replica["full_collection_ms"])
                seen["planned_pause_ms"] = max(seen.get("planned_pause_ms", 0.0), replica.get("planned_pause_ms", 0.0))
                seen["sockets_most"] = max(seen["sockets_most"], replica["sockets"])
                seen["freezes"] = replica.get("freezes", 0)  # (since the replica's start)
                seen["refreezes"] = replica.get("refreezes", 0)
    return results


