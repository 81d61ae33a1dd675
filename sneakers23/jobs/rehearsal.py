"""A whole drop, rehearsed (`sneakers23 drop rehearse SCENARIO`): the scenario's shoppers arrive
around a release the rehearsal schedules, through the store's own doors (jobs/shoppers.py), and the
rehearsal ends with three files that agree: the JSON report, its invariants checked against the
database; the event log (Parquet); and the HTML report drawn from that log (jobs/drop_charts.py).
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sneakers23.domain.admin import ActionKind, AdminAction
from sneakers23.domain.drops import DropMode
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.jobs import drop_charts, event_log
from sneakers23.jobs.report import Attempt, DropReport, Invariant, build_report, percentile
from sneakers23.jobs.scenario import Queue, Scenario
from sneakers23.jobs.buyers import RETRY_FOR_S, retry_after
from sneakers23.jobs.shoppers import RELEASE_LATE_S, Plan, choose_sizes

STAFF = "rehearsal@cli"
SET_UP_S = 3.0  # from the release time fixed (the shoppers' actors up, the drop's mode set) to the first arrival
LAGGING_MS = 1_000.0  # shoppers this far behind their plan (p99): the generator, not the store, set the pace
STALLS_EVERY_S = 5.0
UNTOLD_AFTER_S = 1.0  # a size sold out whose push reached no socket: those open this long after its last sale missed it
SHOPPERS_PER_ACTOR = 1_000  # past this many a node, a second actor (a second core's share of the work)
SIGNED_IN = ("queue", "draw")  # the modes whose shoppers must be signed in
SALES_STEPS = ("purchase", "checkout", "draw")  # a shopper's try for a pair (a draw's: its entry's outcome)
OWN_PACE_WAIT_S = 600.0  # a queue at the store's own pace: the longest a shopper waits in line past the release


@dataclass
class Files:
    json: Path
    log: Path
    html: Path


@dataclass
class RehearsalReport(DropReport):
    steps: dict = field(default_factory=dict)  # by step: count, p50 and p99 (ms)
    release_push: dict = field(default_factory=dict)  # the sockets told, and how long after the release time
    sold_out_pushes: dict = field(default_factory=dict)
    log_counts: dict = field(default_factory=dict)  # what the event log holds (the HTML report is drawn from it)
    visits: dict = field(default_factory=dict)  # how the shoppers' visits went, besides buying: who never got in, left, gave up
    arrivals: dict = field(default_factory=dict)  # how far behind their plan the shoppers arrived (the generator's own lag)
    shoppers_cpu_s: float = 0.0  # the CPU the shoppers' actors spent (the load generator's own cost)
    # By machine (its address): its cores, the run's seconds, how busy its cores were, and how much
    # of that was the shoppers' and how much the store's (with Ray's and anything else running there)
    machines: dict = field(default_factory=dict)
    # By node: its channel replica's longest loop stall and full collection during the run, and the
    # most sockets it held (as the replica said, every few seconds)
    channel_replicas: dict = field(default_factory=dict)
    queue: dict | None = None  # a queued drop's line, as its shoppers were told it (queue_figures)
    draw: dict | None = None  # a draw's entries and outcomes, as its shoppers' pages learnt them (draw_figures)

    def table(self) -> str:
        def ms(value):
            return "-" if value is None else f"{value:.0f}"

        return "\n".join([
            super().table(),
            "steps (p50 / p99 ms):",
            *(f"  {step:<10}{figures['count']:>7}  {ms(figures['p50_ms'])} / {ms(figures['p99_ms'])}"
              for step, figures in self.steps.items()),
            f"release push: {self.release_push['sockets']} sockets ({self.release_push['missed']} missed), p50 / p99 {ms(self.release_push['p50_ms'])} / "
            f"{ms(self.release_push['p99_ms'])} ms from the release time",
            f"sold-out pushes: {self.sold_out_pushes['pushes']} for {self.sold_out_pushes['sizes_sold_out']} sizes, "
            f"{self.sold_out_pushes['missed']} missed",
            f"visits: {self.visits['refused'] or 'none refused'}; {self.visits['ended'] or 'none left early'}; "
            f"{self.visits['sockets_closed_by_the_store']} sockets closed by the store",
            f"arrivals: {self.arrivals['shoppers']} shoppers, behind their plan p50 / p99 / max "
            f"{ms(self.arrivals['late_p50_ms'])} / {ms(self.arrivals['late_p99_ms'])} / {ms(self.arrivals['late_max_ms'])} ms"
            + (" (the shoppers' actors fell behind: the generator, not the store, set the pace)"
               if (self.arrivals['late_p99_ms'] or 0) > LAGGING_MS else ""),
            *([] if self.queue is None else [
                f"queue: {self.queue['places']} places, {self.queue['admitted']} let in, {self.queue['told_sold_out']} told "
                f"sold out in line, {self.queue['untold']} never told; release → first position p50 / p99 "
                f"{ms(self.queue['first_position_p50_ms'])} / {ms(self.queue['first_position_p99_ms'])} ms; longest "
                f"wait for a new position p99 / max {ms(self.queue['position_gap_p99_ms'])} / "
                f"{ms(self.queue['position_gap_max_ms'])} ms"]),
            *([] if self.draw is None else [
                f"draw: {self.draw['entries']} entries ({self.draw['refused'] or 'none refused'}), outcomes "
                f"{self.draw['outcomes']}, {self.draw['never_told']} never told; release → outcome on the page p50 / "
                f"p99 {ms(self.draw['told_p50_ms'])} / {ms(self.draw['told_p99_ms'])} ms, the last {ms(self.draw['told_last_ms'])} ms"]),
            f"the shoppers' actors spent {self.shoppers_cpu_s:.1f} CPU-s",
            *(f"machine {address}: {m['cores']} cores, {m['seconds']:.0f} s, busy {m['busy_share']:.0%} (the shoppers "
              f"{m['shoppers_share']:.0%}, the store and the rest {m['rest_share']:.0%})"
              for address, m in sorted(self.machines.items()) if m["busy_share"] is not None),
            *(f"channel replica on {node[:12]}: at most {figures['sockets_most']} sockets; its loop's longest stall "
              f"{figures['loop_stall_ms']:.0f} ms, its longest full collection {figures['full_collection_ms']:.0f} ms"
              for node, figures in sorted(self.channel_replicas.items())),
        ])


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
    rows = [row for result in results for row in result["rows"]]
    nodes = [result["node"] for result in results for _row in result["rows"]]
    report: RehearsalReport = _report(rows, release_at, ended_at, before, after, inventory.settings.max_pairs_per_product)
    report.shoppers_cpu_s = sum(result["cpu_s"] for result in results)
    report.machines = machines(results)
    if scenario.mode == "queue":
        _with_the_queue(report, [event_log.Row(*row) for row in rows], release_at, inventory.sold_outside_turns(product.id))
    elif scenario.mode == "draw":
        _with_the_draw(report, [event_log.Row(*row) for row in rows])
    report.channel_replicas = stalls
    facts = {"product": product.id, "scenario": scenario.model_dump(), "release_at": release_at,
             "release_time": datetime.fromtimestamp(release_at, timezone.utc).isoformat(timespec="milliseconds"),
             "ended_at": ended_at, "report": report.to_dict(),
             "sizes": {str(item.id): {"size": item.size, "before": before.counts[item.id]} for item in product.items}}
    _write(files_in(directory), report, rows, nodes, facts)
    return report


def machines(results: list[dict]) -> dict:
    """Each machine's CPU over the run, from its shoppers' actors (the longest window of those on
    it: they start together and end with their last shopper), split into the shoppers' share and
    the rest (the store's processes, Ray's, anything else there), as shares of all its cores."""
    shown: dict[str, dict] = {}
    for result in results:
        machine = result.get("machine") or {}
        address = machine.get("address", "?")
        mine = shown.setdefault(address, {"cores": machine.get("cores") or 1, "seconds": 0.0, "busy_cpu_s": None,
                                          "shoppers_cpu_s": 0.0})
        mine["shoppers_cpu_s"] += result["cpu_s"]
        if machine.get("seconds", 0.0) >= mine["seconds"]:
            mine["seconds"], mine["busy_cpu_s"] = machine.get("seconds", 0.0), machine.get("busy_cpu_s")
    for mine in shown.values():
        capacity = mine["cores"] * mine["seconds"]
        known = mine["busy_cpu_s"] is not None and capacity > 0
        mine["busy_share"] = mine["busy_cpu_s"] / capacity if known else None
        mine["shoppers_share"] = mine["shoppers_cpu_s"] / capacity if known else None
        mine["rest_share"] = max(0.0, mine["busy_cpu_s"] - mine["shoppers_cpu_s"]) / capacity if known else None
    return shown


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
                seen["sockets_most"] = max(seen["sockets_most"], replica["sockets"])
                seen["freezes"] = replica.get("freezes", 0)  # (since the replica's start)
                seen["refreezes"] = replica.get("refreezes", 0)
    return results


def _report(rows: list, release_at: float, ended_at: float, before, after, max_pairs: int) -> RehearsalReport:
    rows = [event_log.Row(*row) for row in rows]
    attempts = [Attempt(row.item_id, row.outcome if row.outcome == "sold" or not row.outcome.startswith("http")
                        else "error", row.latency_ms, row.at, row.retries)
                for row in rows if row.kind == "request" and row.step in SALES_STEPS]
    report = RehearsalReport(**vars(build_report("rehearsal", attempts, release_at, ended_at - release_at, before,
                                                 after, max_pairs)))
    report.steps = {step: {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}
                    for step in drop_charts.STEPS
                    for values in [[row.latency_ms for row in rows if row.kind == "request" and row.step == step]]}
    report.release_push = release_push(rows, release_at)
    sold_out = [item_id for item_id, count in after.counts.items() if count == 0 and before.counts.get(item_id, 0) > 0]
    report.sold_out_pushes = sold_out_pushes(rows, sold_out)
    report.visits = visits(rows)
    report.arrivals = arrivals(rows)
    report.log_counts = drop_charts.counts(rows)
    for name, figures in (("every socket joined to the product at the release had its push", report.release_push),
                          ("every socket joined to the product when a size sold out had its push",
                           report.sold_out_pushes)):
        report.invariants.append(Invariant(name, figures["missed"] == 0,
                                           f"{figures['missed']} missed" if figures["missed"] else ""))
    return report


def _sockets(rows: list) -> tuple[dict, dict]:
    """Each shopper's product joins and socket closes (times)."""
    opened, closed = defaultdict(list), defaultdict(list)
    for row in rows:
        if row.kind == "request" and row.step == "join" and row.outcome == "ok":
            opened[row.shopper].append(row.at)
        elif row.kind == "visit" and row.step == "socket_closed":
            closed[row.shopper].append(row.at)
    return opened, closed


def _open_through(opened: dict, closed: dict, start: float, end: float) -> set[int]:
    """The shoppers whose socket had joined the product before `start` and was still open at `end`:
    those a push that reached sockets from `start` to `end` must have reached too (a socket that
    closed meanwhile may have closed before its node's copy of the change came)."""
    return {shopper for shopper, joins in opened.items()
            if any(join < start and not any(join < close <= end for close in closed[shopper]) for join in joins)}


def release_push(rows: list, release_at: float) -> dict:
    """The release push: how long after the release time each socket had it, and the sockets open
    all along that never had it (nor a join that said it was made)."""
    told = {row.shopper: (row.at - release_at) * 1000 for row in rows if row.kind == "push" and row.step == "released"}
    said_at_join = {row.shopper for row in rows if row.kind == "state" and row.outcome == "released"}
    opened, closed = _sockets(rows)
    last = release_at + max(told.values(), default=0.0) / 1000
    missed = len(_open_through(opened, closed, release_at, last) - set(told) - said_at_join)
    return {"sockets": len(told), "p50_ms": percentile(list(told.values()), 50),
            "p99_ms": percentile(list(told.values()), 99), "missed": missed}


def sold_out_pushes(rows: list, sold_out: list[int]) -> dict:
    """Each size that sold out (`sold_out`, as the database says), and the sockets that should have
    been told: joined to the product before its push first reached a socket, and open until the
    last one had it (or, for a size whose push reached no socket at all, open for a second after its
    last sale). Those not told, by a push or at their join, are missed."""
    opened, closed = _sockets(rows)
    told: dict[int, set[int]] = defaultdict(set)
    arrivals: dict[int, list[float]] = defaultdict(list)
    last_sale: dict[int, float] = {}
    for row in rows:
        if row.kind == "push" and row.step == "stock_change" and row.level == "out":
            told[row.item_id].add(row.shopper)
            arrivals[row.item_id].append(row.at)
        elif row.kind == "state" and row.level == "out":  # (its join's answer said so already)
            told[row.item_id].add(row.shopper)
        elif row.kind == "request" and row.outcome == "sold":
            last_sale[row.item_id] = max(last_sale.get(row.item_id, row.at), row.at)
    missed = {}
    for item_id in set(sold_out) | set(arrivals):
        times = arrivals.get(item_id)
        start, end = (min(times), max(times)) if times else (last_sale.get(item_id, 0.0),
                                                             last_sale.get(item_id, 0.0) + UNTOLD_AFTER_S)
        missed[item_id] = len(_open_through(opened, closed, start, end) - told[item_id])
    pushes = sum(row.kind == "push" and row.step == "stock_change" and row.level == "out" for row in rows)
    return {"sizes_sold_out": len(set(sold_out) | set(arrivals)), "pushes": pushes,
            "missed": sum(missed.values()), "missed_per_item": {str(k): v for k, v in missed.items() if v}}


def visits(rows: list) -> dict:
    """How the visits went besides buying: pages, sockets and joins refused, shoppers who left (by
    choice, or on a sold-out size), gave up waiting, or met an error; sockets the store closed."""
    refused = Counter(f"{row.step} {row.outcome}" for row in rows
                      if row.kind == "request" and row.step in ("page", "socket", "join", "join_cart", "queue", "join_queue",
                                                                "draw_view", "enter") and row.outcome != "ok")
    ended = Counter(f"{row.step}: {row.outcome}" for row in rows
                    if row.kind == "visit" and row.step not in ("socket_closed", "arrive"))
    closed_by_store = sum(row.kind == "visit" and row.step == "socket_closed" and row.outcome == "by the store"
                          for row in rows)
    return {"refused": dict(refused), "ended": dict(ended), "sockets_closed_by_the_store": closed_by_store}


def arrivals(rows: list) -> dict:
    """How far behind its plan each shopper arrived: its actor's loop, busy with the others or
    starved of CPU, is late to start it. A p99 of a second or more says the figures measure the
    load generator as much as the store."""
    lags = [row.latency_ms for row in rows if row.kind == "visit" and row.step == "arrive"]
    return {"shoppers": len(lags), "late_p50_ms": percentile(lags, 50), "late_p99_ms": percentile(lags, 99),
            "late_max_ms": max(lags, default=None)}


def queue_figures(rows: list, release_at: float) -> dict:
    """A queued drop's line as its shoppers were told it (their places' pushes and join answers):
    the places taken; from the release time to each pre-queued shopper's first word of where it
    stands (a position, or its turn); the longest each waited between two words while in line,
    up to its turn, the word that the pairs were gone, or the end of its visit; who was let in,
    who was told the pairs were gone (and how that word spread over those in line then), and who
    in line was never told either."""
    seen: dict[int, list] = defaultdict(list)
    last_seen: dict[int, float] = {}
    for row in rows:
        if row.step == "place" and row.kind in ("push", "state"):
            seen[row.shopper].append(row)
        last_seen[row.shopper] = max(last_seen.get(row.shopper, row.at), row.at)
    left_early = {row.shopper for row in rows if row.kind == "visit" and row.step == "leave" and row.outcome == "left"}
    # (a visit that ended on an error, a request unanswered, was not the line's to tell: counted apart)
    failed = {row.shopper for row in rows if row.kind == "visit" and row.step == "error"
              and not row.outcome.startswith("reconnect")}  # (the store closing a socket for good is the line's)
    first_told, gaps, untold = [], [], 0
    admitted = {shopper for shopper, places in seen.items() if any(p.outcome == "admitted" for p in places)}
    # (a place bought, ended or taken out says its wait is over too: one let in and bought at once
    # may never see its admitted word)
    over = {shopper for shopper, places in seen.items() if any(p.outcome in ("bought", "expired", "removed") for p in places)}
    told_out = {shopper: min(p.at for p in places if p.level == "sold_out")
                for shopper, places in seen.items() if any(p.level == "sold_out" for p in places)}
    for shopper, places in seen.items():
        places.sort(key=lambda p: p.at)
        after = [p for p in places if p.at >= release_at and (p.outcome == "admitted" or p.position is not None)]
        if any(p.outcome == "pre_queue" and p.at < release_at for p in places) and after:
            first_told.append((after[0].at - release_at) * 1000)
        ends = [p.at for p in places if p.outcome == "admitted" or p.level == "sold_out"]
        end = ends[0] if ends else last_seen[shopper]  # (its turn, the pairs gone, or the end of its visit)
        in_line = [p.at for p in places if p.outcome == "queue" and p.at < end]
        if in_line:
            marks = [*in_line, end]
            gaps.append(max((b - a) * 1000 for a, b in zip(marks, marks[1:])))
        if shopper not in admitted | over and shopper not in told_out and shopper not in left_early | failed \
                and any(p.outcome in ("queue", "pre_queue") for p in places):
            untold += 1
    # (the sold-out word's spread, over those already in line when it first went out: a later
    # arrival's join said it at once)
    first_out = min(told_out.values(), default=0.0)
    in_line_then = {shopper for shopper, places in seen.items() if any(p.at < first_out for p in places)}
    spread = [(at - first_out) * 1000 for shopper, at in told_out.items() if shopper in in_line_then or at == first_out]
    return {"places": len(seen), "admitted": len(admitted), "told_sold_out": len(told_out), "untold": untold,
            "ended_on_an_error": sum(1 for shopper, places in seen.items() if shopper in failed
                                     and shopper not in admitted | over | set(told_out) | left_early
                                     and any(p.outcome in ("queue", "pre_queue") for p in places)),
            "first_position_p50_ms": percentile(first_told, 50), "first_position_p99_ms": percentile(first_told, 99),
            "position_gap_p99_ms": percentile(gaps, 99), "position_gap_max_ms": max(gaps, default=None),
            "sold_out_told_p99_ms": percentile(spread, 99)}


def _with_the_queue(report: RehearsalReport, rows: list, release_at: float, sold_outside_turns: int) -> None:
    """A queued drop's figures, and its rules as invariants: no pair sold to an account the line
    never let in (the database's orders against its places: the shoppers who press buy before
    their turn must have been refused), and every shopper in line let in or told the pairs are
    gone. (How often a shopper in line is told its new position is a figure: a slow pace moves the
    line less often than that.)"""
    report.queue = queue_figures(rows, release_at)
    _steps(report, rows, ("queue", "proof", "join_queue"))  # (the queue read, its proof of work, the place taken)
    early = _pressed_in_line(rows)
    report.queue["pressed_before_turn"] = dict(Counter(
        row.outcome for row in rows if row.kind == "request" and row.step == "purchase" and (row.shopper, row.at) in early))
    report.invariants += [
        Invariant("no pair sold to an account the line never let in (the database's orders and places)",
                  sold_outside_turns == 0, f"{sold_outside_turns} sold outside the turns" if sold_outside_turns else ""),
        Invariant("every shopper in line was let in or told the pairs were gone", report.queue["untold"] == 0,
                  f"{report.queue['untold']} never told" if report.queue["untold"] else "")]


def _pressed_in_line(rows: list) -> set[tuple[int, float]]:
    """The purchases pressed before their shopper's turn (its first admitted word): (shopper, when
    answered); a press is timed from when it was sent (its answer may come after the turn)."""
    turns: dict[int, float] = {}
    for row in rows:
        if row.step == "place" and row.outcome == "admitted":
            turns[row.shopper] = min(turns.get(row.shopper, row.at), row.at)
    return {(row.shopper, row.at) for row in rows if row.kind == "request" and row.step == "purchase"
            and row.at - (row.latency_ms or 0.0) / 1000 < turns.get(row.shopper, float("inf"))}


def draw_figures(rows: list) -> dict:
    """A draw as its shoppers' pages learnt it: the entries made and refused (by reason), each
    entrant's outcome (`sold`: a pair bought for it), who was never told, and how long after the
    release (the close) each page showed its outcome (asked every 2 s, as the page asks)."""
    entered = {row.shopper for row in rows if row.kind == "request" and row.step == "enter" and row.outcome == "ok"}
    refused = Counter(row.outcome for row in rows if row.kind == "request" and row.step == "enter" and row.outcome != "ok")
    told = [row for row in rows if row.kind == "request" and row.step == "draw"]
    never = len(entered - {row.shopper for row in told})  # (gave up asking, or stopped before it could)
    waits = [row.latency_ms for row in told]
    return {"entries": len(entered), "refused": dict(refused), "outcomes": dict(Counter(row.outcome for row in told)),
            "never_told": never, "told_p50_ms": percentile(waits, 50), "told_p99_ms": percentile(waits, 99),
            "told_last_ms": max(waits, default=None)}


def _with_the_draw(report: RehearsalReport, rows: list) -> None:
    """A draw's figures, and its rule as an invariant: every entrant's page learnt its outcome.
    (That every pair sold went to an entrant drawn for it is the first invariant's: the pairs
    sold, counted from the outcomes the entrants were told, are the database's.)"""
    report.draw = draw_figures(rows)
    _steps(report, rows, ("draw_view", "proof", "enter", "draw_check", "draw"))  # (the draw read, the work, the entry, the outcome)
    never = report.draw["never_told"]
    report.invariants.append(Invariant("every entrant's page learnt its outcome", never == 0,
                                       f"{never} never told" if never else ""))


def _steps(report: RehearsalReport, rows: list, steps: tuple[str, ...]) -> None:
    """A mode's own steps' counts and p50/p99, beside the drop's (a proof of work is `work`, not a request)."""
    for step in steps:
        values = [row.latency_ms for row in rows if row.kind in ("request", "work") and row.step == step]
        report.steps[step] = {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}
