"""A queued drop at scale (issue 25's figures), on one node: SHOPPERS signed-in accounts in product
2's pre-queue, each tab's socket joined to `queue:2` (direct mode: the channel replica's own port,
as for bench/channel_fanout.py's 10,000 sockets), then, in one run:

1. the release, scheduled a few seconds ahead (the release clock releases it, its keeper shuffles
   the pre-queue): from the release time to each tab's first push of its position in line;
   target p99 <= 1 s;
2. the line paused for WINDOW s, then admitting at the staff's pace for WINDOW s: the longest time
   a waiting tab goes without a push of its new position (target <= 5 s; also the time between
   two pushes, the window's edges aside), and the channel replica's CPU (its process's, read from
   /proc, in user space and in the kernel) over each window: admitting less paused is what the
   position updates cost (target <= 10% of a core);
3. the sell-out: the pace raised so that live turns hold every pair left; from the moment the last
   pair was held (the keeper's tick that let in the last holders: their admissions' time, as the
   database keeps it) to each waiting tab's sold-out push; target p99 <= 1 s. Also from the
   pace's change, which adds the wait for the keeper's next tick (up to 0.5 s): in a drop, a
   sell-out is decided by the keeper's own admissions at a tick, never between two.

Baseline, in the same run: a bare `websockets` broadcast of one frame to as many sockets
(bench/bare_broadcast.py), what no store can beat. The load generators (bench/fanout_clients.py,
two processes) report how busy they were, and are not asked for their frames in the QUIET_S after
the release or the sell-out (an answer stops a generator's reading).

    .venv/bin/python -m bench.queue [--shoppers 10000] [--window 30] [--pairs 400]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, insert, select

from bench.channel_fanout import CLIENT_PROCESSES, LoadGenerator, baseline_rounds
from bench.draws import PRODUCT, accounts, stock
from bench.servers import socket_url, start_store
from harness.ports import free_port
from sneakers23.db import waiting_rooms as rooms
from sneakers23.db.models import AccountSessionRow
from sneakers23.domain.accounts import account_of_shopper
from sneakers23.domain.drops import DropMode
from sneakers23.domain.waiting_room import Stage
from sneakers23.inventory import Inventory
from sneakers23.inventory.accounts import _hash_of
from sneakers23.jobs.report import percentile
from sneakers23.serve.shoppers import SESSION_COOKIE, SessionCookies
from sneakers23.settings import Settings

SECRET_KEY = secrets.token_hex(32)  # (the store's and the cookies': one run's)
ADMIT_PER_MINUTE = 120  # the staff's pace while admitting: two a second, one a keeper's tick
QUIET_S = 2.0  # the generators are left alone this long after the release or the sell-out (targets: 1 s)
REPLICA_TITLE = b"ShopperSockets"  # (Ray names the channel replica's process after its class)


def prepare(database_url: str, shoppers: int, pairs: int) -> list[str]:
    """The shop: product 2 a queue, its release a day off, `pairs` pairs; `shoppers` verified
    accounts, each signed in (a session) and holding a place in its pre-queue. Their cookies."""
    inventory = Inventory(Settings(database_url=database_url, secret_key=SECRET_KEY))
    try:
        inventory.upgrade_schema()
        inventory.seed(random_seed=23)
        inventory.set_drop_mode(PRODUCT, DropMode.QUEUE)
        stock(inventory, pairs)
        inventory.schedule_release(PRODUCT, datetime.now(timezone.utc) + timedelta(days=1))
        inventory.set_queue_pace(PRODUCT, ADMIT_PER_MINUTE)
        shopper_ids = accounts(inventory, shoppers, "queued")
        tokens = [secrets.token_urlsafe(32) for _ in shopper_ids]
        now = datetime.now(timezone.utc)
        with inventory.engine.begin() as connection:
            connection.execute(insert(AccountSessionRow.__table__), [
                {"token_hash": _hash_of(token), "account_id": account_of_shopper(shopper), "created_at": now,
                 "client": "127.0.0.1", "user_agent": "bench"} for shopper, token in zip(shopper_ids, tokens)])
            for shopper in shopper_ids:  # (the join's own statement, as a tab's join makes it)
                assert rooms.join(connection, PRODUCT, shopper, secrets.token_hex(8))
    finally:
        inventory.close()
    cookies = SessionCookies(SECRET_KEY)
    return [f"{SESSION_COOKIE}={cookies.cookie(token)}" for token in tokens]


def say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} queue: {what}", file=sys.stderr, flush=True)


def replica_cpu_s() -> tuple[float, float]:
    """CPU seconds spent so far by the channel replica's process: in user space, and in the kernel
    (a loopback send runs the receiving side's TCP too, docs/performance.md)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if REPLICA_TITLE in (entry / "cmdline").read_bytes():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                tick = os.sysconf("SC_CLK_TCK")
                return int(fields[11]) / tick, int(fields[12]) / tick
        except OSError:
            continue
    raise RuntimeError("no channel replica process found")


STAGES: dict[int, str] = {}  # each tab's stage, as its pushes said, over the whole run


def pushes(generators: list[LoadGenerator]) -> tuple[list[list], float]:
    """Every socket's pushes since the last call, and the busiest generator's CPU seconds."""
    for generator in generators:
        generator.send({"pushes": True})
    answers = [generator.answer() for generator in generators]
    logs = [log for answer in answers for log in answer["pushes"]]
    for n, log in enumerate(logs):
        for _t, view in places(log):
            STAGES[n] = view["stage"]
    return logs, max(a["cpu_s"] for a in answers)


def waiting_tabs() -> set[int]:
    """The tabs still in line (told their number, not let in)."""
    return {n for n, stage in STAGES.items() if stage == "queue"}


def wait_until(generators, done, timeout: float, quiet_s: float = 0.0) -> list[list]:
    """The pushes, gathered until `done(pushes)` or the timeout (what came by then). Nothing is asked
    of the generators for the first `quiet_s` (a burst under measure: a generator's answer parses
    and sends every frame it holds, reading no socket meanwhile, and the frames that come then are
    timed late: a sell-out's p99 of 884 ms where its p50 was 324)."""
    gathered: list[list] | None = None
    deadline = time.monotonic() + timeout
    time.sleep(max(0.0, quiet_s))
    while True:
        got, _cpu = pushes(generators)
        gathered = got if gathered is None else [a + b for a, b in zip(gathered, got)]
        if done(gathered) or time.monotonic() > deadline:
            return gathered
        time.sleep(0.5)


def places(log: list) -> list[tuple[float, dict]]:
    return [(t, payload) for t, event, payload in log if event == "place"]


def positioned(log: list) -> float | None:
    """When the tab was first told its position in line (or its turn)."""
    return next((t for t, view in places(log) if "position" in view or view["stage"] == "admitted"), None)


def sold_out_at(log: list) -> float | None:
    return next((t for t, view in places(log) if view.get("sold_out")), None)


def summary(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"n": 0}
    return {"n": len(latencies_ms), "p50_ms": round(statistics.median(latencies_ms), 1),
            "p99_ms": round(percentile(latencies_ms, 99), 1), "max_ms": round(max(latencies_ms), 1)}


def the_queue(database_url: str, shoppers: int, window_s: float, pairs: int) -> dict:
    cookies = prepare(database_url, shoppers, pairs)
    port = free_port()
    store = start_store("direct", database_url, port, {"SNEAKERS23_SECRET_KEY": SECRET_KEY})
    generators: list[LoadGenerator] = []
    try:
        url = socket_url("direct", port)
        each = shoppers // CLIENT_PROCESSES
        opened_at = time.perf_counter()
        for n in range(CLIENT_PROCESSES):
            generator = LoadGenerator()
            generators.append(generator)
            generator.send({"open": url, "count": each, "join": f"queue:{PRODUCT}",
                            "cookies": cookies[n * each:(n + 1) * each], "log": True})
        opened = [generator.answer() for generator in generators]
        joined = sum(answer["joined"] for answer in opened)
        figures: dict = {"sockets": sum(a["opened"] for a in opened), "joined": joined,
                         "joins_s": round(time.perf_counter() - opened_at, 1)}
        say(f"{joined} tabs joined the queue in {figures['joins_s']} s")
        if joined < CLIENT_PROCESSES * each:
            raise RuntimeError(f"only {joined} of {CLIENT_PROCESSES * each} tabs joined the queue")
        pushes(generators)  # (what came before the release: nothing is measured from it)

        # 1. The release.
        inventory = Inventory(Settings(database_url=database_url, secret_key=SECRET_KEY))
        try:
            release_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=5)
            inventory.schedule_release(PRODUCT, release_at)
            say(f"the release at {release_at:%H:%M:%S}")
            logs = wait_until(generators, lambda got: all(positioned(log) for log in got), 30 + release_at.timestamp()
                              - time.time(), quiet_s=release_at.timestamp() + QUIET_S - time.time())
            told = [positioned(log) for log in logs]
            figures["release"] = {**summary([(t - release_at.timestamp()) * 1000 for t in told if t]),
                                  "never_told": sum(t is None for t in told)}

            # 2. Paused, then admitting: the gaps between each waiting tab's position pushes, and the
            # replica's CPU in each window.
            inventory.set_queue_pace(PRODUCT, 0)
            time.sleep(2)  # (the keeper's tick, and the tabs told the pause)
            pushes(generators)
            say(f"the line paused for {window_s:g} s")
            cpu, started = replica_cpu_s(), time.monotonic()
            time.sleep(window_s)  # (a window of measure, not a wait for a condition)
            paused_cpu = [(b - a) / (time.monotonic() - started) for a, b in zip(cpu, replica_cpu_s())]
            pushes(generators)
            inventory.set_queue_pace(PRODUCT, ADMIT_PER_MINUTE)
            in_line = waiting_tabs()
            say(f"admitting {ADMIT_PER_MINUTE} a minute for {window_s:g} s")
            cpu, started, begun = replica_cpu_s(), time.monotonic(), time.time()
            time.sleep(window_s)
            admitting_cpu = [(b - a) / (time.monotonic() - started) for a, b in zip(cpu, replica_cpu_s())]
            ended = time.time()
            logs, client_cpu = pushes(generators)
            gaps, between = [], []
            for n in in_line & waiting_tabs():  # (those let in meanwhile wait no longer)
                times = [t for t, view in places(logs[n]) if "position" in view and t <= ended]
                edges = [begun, *times, ended]
                gaps.append(max(b - a for a, b in zip(edges, edges[1:])))
                inside = [t for t in times if t >= begun]
                between += [b - a for a, b in zip(inside, inside[1:])]
            figures["admitting"] = {
                "pace_per_minute": ADMIT_PER_MINUTE, "window_s": window_s, "waiting_tabs": len(gaps),
                "longest_gap_p99_s": round(percentile(gaps, 99), 2), "longest_gap_max_s": round(max(gaps), 2),
                "tabs_over_5_s": sum(g > 5 for g in gaps),
                "between_pushes_s": {"p50": round(statistics.median(between), 3),  # (a tab's two pushes, the window's edges aside)
                                     "p99": round(percentile(between, 99), 3), "max": round(max(between), 3)}
                if between else None,  # (a window shorter than the interval has none)
                "position_pushes_per_s": round(sum(1 for log in logs for _t, view in places(log) if "position" in view)
                                               / (ended - begun)),
                "replica_cpu_admitting": round(sum(admitting_cpu), 3), "replica_cpu_paused": round(sum(paused_cpu), 3),
                "replica_cpu_for_positions": round(sum(admitting_cpu) - sum(paused_cpu), 3),
                "of_which_user_system": [round(a - p, 3) for a, p in zip(admitting_cpu, paused_cpu)],
                "client_cpu_busiest": round(client_cpu / (ended - begun), 3)}

            # 3. The sell-out: every pair left held by a live turn.
            waiting = waiting_tabs()
            say("the sell-out")
            changed_at = time.time()
            inventory.set_queue_pace(PRODUCT, 1_000_000)
            logs = wait_until(generators, lambda got: all(sold_out_at(got[n]) or _let_in(got[n]) for n in waiting), 30,
                              quiet_s=QUIET_S + 0.5)  # (+ the keeper's next tick)
            still = [n for n in waiting if not _let_in(logs[n])]
            told = [sold_out_at(logs[n]) for n in still]
            held_at = last_held_at(inventory, changed_at)
            if held_at is None:  # (every pair was held before the pace's change: --pairs too few)
                figures["sell_out"] = {"n": 0, "never_told": len(told), "why": "nobody was let in at the sell-out"}
            else:
                figures["sell_out"] = {**summary([(t - held_at) * 1000 for t in told if t]),
                                       "never_told": sum(t is None for t in told),
                                       "last_pair_held_after_pace_change_ms": round((held_at - changed_at) * 1000, 1)}
            figures["sell_out_from_pace_change"] = summary([(t - changed_at) * 1000 for t in told if t])
        finally:
            inventory.close()
        return figures
    finally:
        for generator in generators:
            generator.stop()
        store.stop()


def last_held_at(inventory: Inventory, since: float) -> float | None:
    """When the last pair was held: the latest admission written since `since` (the keeper's tick
    that let in the last holders; none is let in after a sell-out). None: nobody was let in."""
    with inventory.engine.connect() as connection:
        moment = connection.execute(select(func.max(rooms.places_t.c.updated_at)).where(
            rooms.places_t.c.product_id == PRODUCT, rooms.places_t.c.stage == str(Stage.ADMITTED),
            rooms.places_t.c.updated_at >= rooms._moment(since))).scalar_one()
    return rooms._seconds(moment)  # (the rows' own conversions: SQLite keeps no time zone)


def _let_in(log: list) -> bool:
    return any(view["stage"] == "admitted" for _t, view in places(log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=400)
    args = parser.parse_args()
    if args.shoppers < CLIENT_PROCESSES or args.window <= 0 or args.pairs < 1:
        raise SystemExit(f"--shoppers is at least {CLIENT_PROCESSES}, --window more than 0, --pairs at least 1")
    say(f"the baseline: a bare broadcast to {args.shoppers} sockets")
    baseline = baseline_rounds([args.shoppers], 3)[args.shoppers]
    workdir = Path(tempfile.mkdtemp(prefix="s23queue-"))
    queue = the_queue(f"sqlite:///{workdir / 'shop.db'}", args.shoppers, args.window, args.pairs)
    base = summary(baseline[0])
    figures = {"shoppers": args.shoppers, "bare_broadcast": {**base, "client_busy": round(baseline[1], 3)}, **queue}
    for step in ("release", "sell_out"):
        if queue[step].get("n"):
            figures[step]["p99_over_bare"] = round(queue[step]["p99_ms"] / base["p99_ms"], 2)
    figures["met"] = {
        "release_p99_le_1s": queue["release"].get("p99_ms", 1e9) <= 1000 and not queue["release"]["never_told"],
        "positions_every_5s": queue["admitting"]["tabs_over_5_s"] == 0,
        "positions_cpu_le_10pct": queue["admitting"]["replica_cpu_for_positions"] <= 0.10,
        "sell_out_p99_le_1s": queue["sell_out"].get("p99_ms", 1e9) <= 1000 and not queue["sell_out"]["never_told"]}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
