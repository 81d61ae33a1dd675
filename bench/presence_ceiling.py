"""The presence actor's ceiling: how many tab changes a second, reported by how many nodes, its one
process takes before the admin dashboards fall behind (docs/capacity.md's second single point).

The store's own `Presence` actor runs, unchanged. Each "node" is a reporting loop, as a channel
replica's tab tracker is while its tabs keep changing: it sleeps 50 ms (its gathering window,
`GATHER_S`), sends a numbered report of what changed meanwhile (a tab opens, the oldest closes, at
a steady rate), waits for the reply, and again; its whole state again when the board asks. Nodes
start out of step and share a few reporter processes. A follower, as the admin desk is, follows the
board from a cursor; each change is timed from when it happened (within its window) to the
follower reading the diff that names it, and changes it never saw are counted ("untimed"). The
presence actor's CPU includes the follower's reads (the baseline has none).

The baseline, in the same run: the same reporters against a target that takes each report and
does nothing (the reporters' own ceiling, and what a Ray call costs the receiving side).

    .venv/bin/python -m bench.presence_ceiling [--nodes 8,32,128] [--changes 1,5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import ray

from bench.replication_ceiling import cpu_s, until_still
from sneakers23.actors.presence import Presence
from sneakers23.domain.presence import Report, TabJoined, TabLeft
from sneakers23.jobs.report import percentile

GATHER_S = 0.05  # as serve/presence.py's tracker gathers a node's changes into one report
REPORTER_PROCESSES = 4
TABS_PER_NODE = 200  # each node's open tabs, kept steady: every change opens one and closes the oldest


@ray.remote(num_cpus=0, enable_task_events=False)
class Reporters:
    """Some nodes' tab trackers: each reports its changes every GATHER_S, one report at a time."""

    async def run(self, target, nodes: list[str], rate: float, seconds: float) -> dict:
        started = time.monotonic()
        counts = await asyncio.gather(*(self._node(target, node, rate, started + seconds) for node in nodes))
        return {"reports": sum(c[0] for c in counts), "changes": sum(c[1] for c in counts),
                "took_s": time.monotonic() - started}

    async def _node(self, target, node: str, rate: float, until: float) -> tuple[int, int]:
        """One node's tracker, as serve/presence.py's runs while its tabs keep changing: its whole
        state first; then it sleeps GATHER_S, sends what changed meanwhile (`rate` changes a
        second: a tab opens, the oldest closes), waits for the reply, and again. So a slow board
        slows its reports, and each carries more. Each change is stamped with when it happened."""
        source = f"{node}-{os.getpid()}-{time.monotonic_ns()}"  # (a new life of the source each step)
        tabs = [f"{source}-t{n}" for n in range(TABS_PER_NODE)]
        opened = TABS_PER_NODE
        await asyncio.sleep(random.uniform(0, GATHER_S))  # (nodes' windows are not in step)
        seq, reports, changes, owed = 1, 1, 0, 0.0
        full = not await target.report.remote(Report(source, node, seq, tuple(
            TabJoined(tab, tab, {"full": True}) for tab in tabs), True, len(tabs)))
        last = time.time()
        while time.monotonic() < until:
            await asyncio.sleep(GATHER_S)
            now = time.time()
            owed += (now - last) * rate
            count, owed = int(owed), owed - int(owed)
            deltas: list = []
            for n in range(count):
                gone = tabs.pop(0)
                tab = f"{source}-t{opened}"
                opened += 1
                tabs.append(tab)
                deltas += [TabLeft(gone), TabJoined(tab, tab, {"sent": last + (n + 1) * (now - last) / count})]
            changes += count
            if full:  # (the board asked for its whole state: every tab, none timed)
                deltas = [TabJoined(tab, tab, {"full": True}) for tab in tabs]
            last = now
            seq += 1
            full = not await target.report.remote(Report(source, node, seq, tuple(deltas), full, len(tabs)))
            reports += 1
        return reports, changes

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, enable_task_events=False)
class Follower:
    """The admin desk's part: follows the board, noting how long after it was sent each tab's
    join was read."""

    def __init__(self, board):
        self.board, self.lags, self.running = board, [], False
        self.first_read = asyncio.Event()

    async def started(self) -> None:
        """Returns once it has the board's state (changes after that are all timed)."""
        await self.first_read.wait()

    async def follow(self) -> None:
        self.running = True
        epoch, cursor = "", 0
        while self.running:
            read = await self.board.follow.remote(epoch, cursor, 1.0)
            self.first_read.set()
            now = time.time()
            if read.state is None:
                for diff in read.diffs:
                    for joined in diff.joins.values():
                        self.lags.extend((now - meta["sent"]) * 1000 for meta in joined["metas"] if "sent" in meta)
            epoch, cursor = read.epoch, read.cursor

    async def count(self) -> int:
        return len(self.lags)

    async def take(self) -> list[float]:
        lags, self.lags = self.lags, []
        return lags

    async def stop(self) -> None:
        self.running = False


@ray.remote(num_cpus=0, enable_task_events=False)
class TakesReports:
    """The baseline: takes each report and does nothing with it."""

    async def report(self, report: Report) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()


def step(target, target_pid: int, reporters: list, reporter_pids: list[int], follower, nodes: int,
         rate: float, seconds: float) -> dict:
    names = [f"node-{n}" for n in range(nodes)]
    target_before = cpu_s(target_pid)
    reporters_before = sum(cpu_s(pid) for pid in reporter_pids)
    started = time.monotonic()
    runs = ray.get([reporter.run.remote(target, names[k::len(reporters)], rate, seconds)
                    for k, reporter in enumerate(reporters)])
    wall = time.monotonic() - started
    target_cpu = cpu_s(target_pid) - target_before
    reporters_cpu = sum(cpu_s(pid) for pid in reporter_pids) - reporters_before
    lags = settled(follower) if follower is not None else []
    reports = sum(run["reports"] for run in runs)
    changes = sum(run["changes"] for run in runs)
    return {"nodes": nodes, "rate": rate, "reports_per_s": reports / wall, "untimed": changes - len(lags) if follower else 0,
            "changes_per_s": changes / wall, "offered_per_s": nodes * rate,
            "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99),
            "lag_max_ms": max(lags, default=None), "target_core": target_cpu / wall,
            "reporters_core": reporters_cpu / wall,
            "us_per_report": target_cpu / reports * 1e6 if reports else None}


def settled(follower, most_s: float = 120.0) -> list[float]:
    """The follower's lags, once it has read nothing new for a second and a half (its follow waits
    up to a second for news): a board that fell behind is read to its end."""
    until_still(lambda: ray.get(follower.count.remote()), 1.5, most_s, "the follower was still reading")
    return ray.get(follower.take.remote())


def line(name: str, figures: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:,.0f}"

    return (f"{name:10} {figures['nodes']:>5} {figures['offered_per_s']:>9,.0f} {figures['changes_per_s']:>9,.0f} "
            f"{figures['reports_per_s']:>9,.0f} {ms(figures['lag_p50_ms']):>7} {ms(figures['lag_p99_ms']):>7} "
            f"{ms(figures['lag_max_ms']):>7} {figures['untimed']:>7,} {figures['target_core']:>6.2f} "
            f"{figures['reporters_core']:>6.2f} {figures['us_per_report'] or 0:>8,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="8,32,128")
    parser.add_argument("--rates", default="20,100", help="tab changes a second on each node")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        reporters = [Reporters.remote() for _ in range(REPORTER_PROCESSES)]
        reporter_pids = ray.get([reporter.pid.remote() for reporter in reporters])
        print(f"{'target':10} {'nodes':>5} {'offered/s':>9} {'changes/s':>9} {'reports/s':>9} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'untimed':>7} {'core':>6} {'rep.':>6} {'us/rep.':>8}")
        for nodes in (int(n) for n in args.nodes.split(",")):
            for rate in (float(r) for r in args.rates.split(",")):
                bare = TakesReports.remote()
                figures = step(bare, ray.get(bare.pid.remote()), reporters, reporter_pids, None, nodes, rate,
                               args.seconds)
                print(line("baseline", figures), flush=True)
                ray.kill(bare)
                presence = Presence.remote()  # (a fresh board each step: no tabs of the last)
                presence_pid = ray.get(presence.__ray_call__.remote(lambda self: os.getpid()))
                follower = Follower.remote(presence)
                follower.follow.remote()
                ray.get(follower.started.remote())
                figures = step(presence, presence_pid, reporters, reporter_pids, follower, nodes, rate, args.seconds)
                print(line("presence", figures), flush=True)
                ray.get(follower.stop.remote())
                ray.kill(follower)
                ray.kill(presence)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
