"""The presence actor's ceiling: how many tab changes a second, reported by how many nodes, its one
process takes before the admin dashboards fall behind (docs/capacity.md's second single point).

The store's own `Presence` actor runs, unchanged. Each "node" is a reporting loop, as a channel
replica's tab tracker is: a numbered report every 50 ms (its gathering window, `GATHER_S`) with
that window's changes (a tab opens, another closes), one report in flight at a time, its whole
state again when the board asks. Nodes share a few reporter processes. A follower, as the admin
desk is, follows the board from a cursor; each change is timed from its report being sent to the
follower reading the diff that names it.

The baseline, in the same run: the same reporters against a target that takes each report and
does nothing (the reporters' own ceiling, and what a Ray call costs the receiving side).

    .venv/bin/python -m bench.presence_ceiling [--nodes 8,32,128] [--changes 1,5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import ray

from bench.replication_ceiling import cpu_s
from sneakers23.actors.presence import Presence
from sneakers23.domain.presence import Report, TabJoined, TabLeft
from sneakers23.jobs.report import percentile

GATHER_S = 0.05  # as serve/presence.py's tracker gathers a node's changes into one report
REPORTER_PROCESSES = 4
TABS_PER_NODE = 200  # each node's open tabs, kept steady: every change opens one and closes the oldest


@ray.remote(num_cpus=0, enable_task_events=False)
class Reporters:
    """Some nodes' tab trackers: each reports its changes every GATHER_S, one report at a time."""

    async def run(self, target, nodes: list[str], changes_per_report: int, seconds: float) -> dict:
        started = time.monotonic()
        counts = await asyncio.gather(*(self._node(target, node, changes_per_report, started + seconds)
                                        for node in nodes))
        return {"reports": sum(c[0] for c in counts), "changes": sum(c[1] for c in counts),
                "took_s": time.monotonic() - started}

    async def _node(self, target, node: str, changes_per_report: int, until: float) -> tuple[int, int]:
        source = f"{node}-{os.getpid()}-{time.monotonic_ns()}"  # (a new life of the source each step)
        tabs = [f"{source}-t{n}" for n in range(TABS_PER_NODE)]
        opened = TABS_PER_NODE
        full, seq, reports, changes = True, 0, 0, 0
        while time.monotonic() < until:
            due = time.monotonic() + GATHER_S
            seq += 1
            now = time.time()
            if full:  # (its whole state: not a change, and not timed)
                deltas = tuple(TabJoined(tab, tab, {"full": now}) for tab in tabs)
            else:
                deltas = []
                for _ in range(changes_per_report):
                    gone = tabs.pop(0)
                    tab = f"{source}-t{opened}"
                    opened += 1
                    tabs.append(tab)
                    deltas += [TabLeft(gone), TabJoined(tab, tab, {"sent": now})]
                changes += changes_per_report
            full = not await target.report.remote(Report(source, node, seq, tuple(deltas), full, len(tabs)))
            reports += 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        return reports, changes

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, enable_task_events=False)
class Follower:
    """The admin desk's part: follows the board, noting how long after it was sent each tab's
    join was read."""

    def __init__(self, board):
        self.board, self.lags, self.running = board, [], False

    async def follow(self) -> None:
        self.running = True
        epoch, cursor = "", 0
        while self.running:
            read = await self.board.follow.remote(epoch, cursor, 1.0)
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
         changes_per_report: int, seconds: float) -> dict:
    names = [f"node-{n}" for n in range(nodes)]
    target_before = cpu_s(target_pid)
    reporters_before = sum(cpu_s(pid) for pid in reporter_pids)
    started = time.monotonic()
    runs = ray.get([reporter.run.remote(target, names[k::len(reporters)], changes_per_report, seconds)
                    for k, reporter in enumerate(reporters)])
    wall = time.monotonic() - started
    target_cpu = cpu_s(target_pid) - target_before
    reporters_cpu = sum(cpu_s(pid) for pid in reporter_pids) - reporters_before
    lags = settled(follower) if follower is not None else []
    reports = sum(run["reports"] for run in runs)
    changes = sum(run["changes"] for run in runs)
    return {"nodes": nodes, "per_report": changes_per_report, "reports_per_s": reports / wall,
            "changes_per_s": changes / wall, "offered_per_s": nodes * changes_per_report / GATHER_S,
            "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99),
            "lag_max_ms": max(lags, default=None), "target_core": target_cpu / wall,
            "reporters_core": reporters_cpu / wall,
            "us_per_report": target_cpu / reports * 1e6 if reports else None}


def settled(follower, most_s: float = 120.0) -> list[float]:
    """The follower's lags, once it has read nothing new for a second and a half (its follow waits
    up to a second for news): a board that fell behind is read to its end."""
    deadline, last = time.monotonic() + most_s, None
    while time.monotonic() < deadline:
        now = ray.get(follower.count.remote())
        if now == last:
            return ray.get(follower.take.remote())
        last = now
        time.sleep(1.5)
    raise RuntimeError(f"the follower was still reading {most_s:.0f} s after the step")


def line(name: str, figures: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:,.0f}"

    return (f"{name:10} {figures['nodes']:>5} {figures['offered_per_s']:>9,.0f} {figures['changes_per_s']:>9,.0f} "
            f"{figures['reports_per_s']:>9,.0f} {ms(figures['lag_p50_ms']):>7} {ms(figures['lag_p99_ms']):>7} "
            f"{ms(figures['lag_max_ms']):>7} {figures['target_core']:>6.2f} {figures['reporters_core']:>6.2f} "
            f"{figures['us_per_report'] or 0:>8,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="8,32,128")
    parser.add_argument("--changes", default="1,5", help="tab changes in each node's report (20 reports a second)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        reporters = [Reporters.remote() for _ in range(REPORTER_PROCESSES)]
        reporter_pids = ray.get([reporter.pid.remote() for reporter in reporters])
        print(f"{'target':10} {'nodes':>5} {'offered/s':>9} {'changes/s':>9} {'reports/s':>9} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'core':>6} {'rep.':>6} {'us/rep.':>8}")
        for nodes in (int(n) for n in args.nodes.split(",")):
            for per_report in (int(k) for k in args.changes.split(",")):
                bare = TakesReports.remote()
                figures = step(bare, ray.get(bare.pid.remote()), reporters, reporter_pids, None, nodes, per_report,
                               args.seconds)
                print(line("baseline", figures), flush=True)
                ray.kill(bare)
                presence = Presence.remote()  # (a fresh board each step: no tabs of the last)
                presence_pid = ray.get(presence.__ray_call__.remote(lambda self: os.getpid()))
                follower = Follower.remote(presence)
                follower.follow.remote()
                figures = step(presence, presence_pid, reporters, reporter_pids, follower, nodes, per_report,
                               args.seconds)
                print(line("presence", figures), flush=True)
                ray.get(follower.stop.remote())
                ray.kill(follower)
                ray.kill(presence)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
