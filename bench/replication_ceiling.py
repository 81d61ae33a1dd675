"""The replication actor's ceiling: how many changes, each delivered to how many node caches, its one
process carries in a second before the caches fall behind (docs/capacity.md's first single point).

The store's own `Replicator` runs, its code unchanged, with one difference: its caches are sinks
given to it, not the caches of live Ray nodes (a cluster of 64 nodes does not fit on 2 cores). Each
"node" is a handle; handles share a few sink processes (the replicator makes one call per node
either way, which is its cost; a sink only notes when the last of its nodes had each change). A
publisher actor publishes one change per call at a steady rate, as the store's writers do, and each
change is timed from its publish to the moment every node had it.

The baseline, in the same run and on the same sinks: a bare fan-out actor that sends each change to
every node at once (one Ray call per node per change, no batching, nothing kept). The publisher's
own ceiling is checked against a target that does nothing (no caches): its achieved rate there is
the most any figure here can show.

    .venv/bin/python -m bench.replication_ceiling [--nodes 8,32,128] [--rates 100,300,1000,3000] [--seconds 5]
    .venv/bin/python -m bench.replication_ceiling --nodes 8,32,128 --burst 33000 --per-publish 10

With --burst, a drop's burst instead: that many changes published at once, a few in each publish (a
group commit's batch), timed until every node has every one. Each burst goes twice: to every cache
from the replication actor itself (the baseline), then through relays by groups of --group-size
nodes (actors/relay.py), with the replication actor's CPU and the relays' apart: on a cluster each
relay has a node of its own, here they share the machine's two cores with the sinks.

    .venv/bin/python -m bench.replication_ceiling --nodes 128,529 --burst 10000 --per-publish 10 --group-size 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter

import ray

from sneakers23.actors.relay import Relay
from sneakers23.actors.replicator import Replicator
from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.jobs.report import percentile
from sneakers23.settings import Settings

SINK_PROCESSES = 4
BEHIND_S = 1.0  # a step whose p99 lag passes this: the caches are falling behind
SETTLE_S = 30.0  # after the last publish, how long the nodes are given to catch up
BARE_MOST = 4_000  # deliveries a second past which the baseline is not run (its backlog would outlast the step)


@ray.remote(num_cpus=0, enable_task_events=False)
class Sink:
    """Some nodes' caches, as the replicator sees them: `apply` notes each change's arrival, and the
    time the last of this sink's nodes had it."""

    def __init__(self):
        self.nodes, self.counts, self.done_at = 0, Counter(), {}

    async def reset(self, nodes: int) -> None:
        self.nodes, self.counts, self.done_at = nodes, Counter(), {}

    async def apply(self, changes: list) -> int:
        now = time.time()
        for change in changes:
            self.counts[change.version] += 1
            if self.counts[change.version] == self.nodes:
                self.done_at[change.version] = now
        return len(changes)

    async def arrivals(self) -> dict[int, float]:
        return self.done_at

    async def received(self) -> int:
        return sum(self.counts.values())

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, max_restarts=0, enable_task_events=False)
class SinkReplicator(Replicator.__ray_actor_class__):
    """The store's replication actor, with sinks for the caches of its nodes (no watch of Ray's)."""

    async def _sync_nodes(self) -> None:
        return None

    async def use(self, caches: dict) -> None:
        self._caches = dict(caches)
        self._regroup()

    def _start_relay(self, node_id: str):
        return SinkRelay.remote()  # (its "nodes" are sinks: no node to place it on)

    async def idle(self) -> None:
        """Returns once every node's outbox is empty and no call to its cache is under way, here and
        at every relay."""
        await self._direct.idle()
        await self._relayed.idle()
        await asyncio.gather(*(relay.idle.remote() for relay in self._relays.values()))

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, max_restarts=0, enable_task_events=False)
class SinkRelay(Relay.__ray_actor_class__):
    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, enable_task_events=False)
class BareFanOut:
    """The baseline: each change sent to every node at once, one call each, nothing kept."""

    def __init__(self):
        self._caches: dict = {}

    async def use(self, caches: dict) -> None:
        self._caches = dict(caches)

    async def publish(self, changes: list) -> int:
        for cache in self._caches.values():
            cache.apply.remote(changes)
        return len(self._caches)

    async def idle(self) -> None:
        return None  # (nothing kept: what it sent is the sinks' to receive)

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0, enable_task_events=False)
class Publisher:
    """Publishes one change a call at a steady rate, none after `seconds`: when each was
    published (by version), and the seconds its publishing took (past `seconds` when it fell
    behind: the rate it achieved is what it sent over those)."""

    async def run(self, target, rate: float, seconds: float, first_version: int) -> tuple[dict[int, float], float]:
        published: dict[int, float] = {}
        calls = []
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds:
            for _ in range(min(int(elapsed * rate) + 1, int(seconds * rate)) - sent):
                version = first_version + sent
                published[version] = time.time()
                calls.append(target.publish.remote([AvailabilityChanged(1, 1, 5, version)]))
                sent += 1
            await asyncio.sleep(0.002)
        took = time.monotonic() - start
        await asyncio.gather(*calls)
        return published, max(took, seconds)

    async def burst(self, target, changes: int, per_publish: int, first_version: int) -> dict[int, float]:
        """A drop's burst: `changes` published at once, `per_publish` in each call (a group
        commit's batch), as fast as calls go; when each was published."""
        published: dict[int, float] = {}
        calls = []
        for start in range(0, changes, per_publish):
            versions = range(first_version + start, first_version + min(changes, start + per_publish))
            now = time.time()
            published.update((version, now) for version in versions)
            calls.append(target.publish.remote([AvailabilityChanged(1, 1, 5, version) for version in versions]))
            if len(calls) % 100 == 0:
                await asyncio.sleep(0)  # (its calls go out as they are made)
        await asyncio.gather(*calls)
        return published

    def pid(self) -> int:
        return os.getpid()


def cpu_s(pid: int) -> float:
    """A process's CPU seconds so far (user and system), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def given_nodes(target, sinks: list, nodes: int) -> None:
    """The target's caches: `nodes` handles over the sinks in turn, each sink told how many are its."""
    ray.get([sink.reset.remote(len(range(k, nodes, len(sinks)))) for k, sink in enumerate(sinks)])
    ray.get(target.use.remote({f"node-{n}": sinks[n % len(sinks)] for n in range(nodes)}))


def everywhere(sinks: list, nodes: int, published: dict[int, float]) -> dict[int, float]:
    """The published changes every node has had so far, each with when the last one had it (a
    change is everywhere once each sink that has nodes has it)."""
    with_nodes = min(nodes, len(sinks))
    last: dict[int, float] = {}
    told: Counter = Counter()
    for done in ray.get([sink.arrivals.remote() for sink in sinks]):
        for version, at in done.items():
            last[version] = max(last.get(version, 0.0), at)
            told[version] += 1
    return {v: at for v, at in last.items() if v in published and told[v] == with_nodes}


def until_still(read, pause_s: float, most_s: float, what: str) -> None:
    """Until `read()` gives the same twice, `pause_s` apart; RuntimeError past `most_s`."""
    deadline, last = time.monotonic() + most_s, None
    while time.monotonic() < deadline:
        now = read()
        if now == last:
            return
        last = now
        time.sleep(pause_s)
    raise RuntimeError(f"{what} {most_s:.0f} s after the step")


def step(target, target_pid: int, publisher, publisher_pid: int, sinks: list, nodes: int, rate: float,
         seconds: float, first_version: int) -> dict:
    """One rate against one target with `nodes` caches: the publishes achieved, each change's lag to
    its last node (p50/p99/max, and how many had not reached every node within SETTLE_S), the
    target's and the publisher's CPU (the target's per delivery made: counted once all is quiet)."""
    given_nodes(target, sinks, nodes)
    target_before, publisher_before, started = cpu_s(target_pid), cpu_s(publisher_pid), time.monotonic()
    published, took = ray.get(publisher.run.remote(target, rate, seconds, first_version))
    wall = time.monotonic() - started
    target_cpu, publisher_cpu = cpu_s(target_pid) - target_before, cpu_s(publisher_pid) - publisher_before
    arrived: dict[int, float] = {}
    deadline = time.monotonic() + SETTLE_S
    while nodes:
        arrived = everywhere(sinks, nodes, published)
        if len(arrived) == len(published) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    quiet(target, sinks)
    received = sum(ray.get([sink.received.remote() for sink in sinks]))
    settled_cpu = cpu_s(target_pid) - target_before
    lags = [(arrived[v] - at) * 1000 for v, at in published.items() if v in arrived]
    # (carried a second: the deliveries over the time from the first publish to the last arrival)
    span = max(arrived.values(), default=0.0) - min(published.values(), default=0.0)
    return {"nodes": nodes, "rate": rate, "seconds": took, "achieved": len(published) / took,
            "changes": len(published), "deliveries": received, "carried": received / span if span > 0 else 0.0,
            "late": len(published) - len(lags) if nodes else 0,
            "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99), "lag_max_ms": max(lags, default=None),
            "target_core": target_cpu / wall, "target_cpu_s": settled_cpu, "publisher_core": publisher_cpu / wall,
            "us_per_delivery": settled_cpu / received * 1e6 if received else None}


def burst_step(target, target_pid: int, publisher, sinks: list, nodes: int, changes: int, per_publish: int,
               first_version: int) -> dict:
    """A drop's burst of `changes` to `nodes` caches: how long until every node had every change,
    and the target's CPU for it (per change delivered to a node), and its relays' if it has any."""
    given_nodes(target, sinks, nodes)
    relay_pids = ray.get([relay.pid.remote() for relay in ray.get(target.relays.remote()).values()])
    before, relays_before, started = cpu_s(target_pid), sum(map(cpu_s, relay_pids)), time.time()
    published = ray.get(publisher.burst.remote(target, changes, per_publish, first_version))
    quiet(target, sinks)
    arrived = list(everywhere(sinks, nodes, published).values())
    spent, relays_spent = cpu_s(target_pid) - before, sum(map(cpu_s, relay_pids)) - relays_before
    received = sum(ray.get([sink.received.remote() for sink in sinks]))
    took = max(arrived) - started if len(arrived) == len(published) else None
    return {"nodes": nodes, "changes": changes, "per_publish": per_publish, "everywhere_s": took,
            "carried": received / took if took else None, "cpu_s": spent, "relays": len(relay_pids),
            "relays_cpu_s": relays_spent, "us_per_delivery": spent / received * 1e6 if received else None}


def quiet(target, sinks: list, most_s: float = 600.0) -> None:
    """Until the target has nothing left to send and no sink has received anything for half a
    second: a step that fell behind leaves no backlog to the next."""
    ray.get(target.idle.remote(), timeout=most_s)
    until_still(lambda: sum(ray.get([sink.received.remote() for sink in sinks])), 0.5, most_s,
                "the caches were still receiving (the next step would measure its backlog)")


def line(name: str, figures: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:,.0f}"

    per = figures["us_per_delivery"]
    return (f"{name:11} {figures['nodes']:>5} {figures['rate']:>7,.0f} {figures['achieved']:>8,.0f} "
            f"{figures['carried']:>10,.0f} "
            f"{ms(figures['lag_p50_ms']):>7} {ms(figures['lag_p99_ms']):>7} {ms(figures['lag_max_ms']):>7} "
            f"{figures['late']:>6,} {figures['target_core']:>6.2f} {figures['publisher_core']:>6.2f} "
            f"{'-' if per is None else format(per, '.1f'):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="8,32,128", help="the caches each change goes to, one list per step")
    parser.add_argument("--rates", default="100,300,1000,3000", help="changes published a second")
    parser.add_argument("--seconds", type=float, default=5.0, help="each step's publishing time")
    parser.add_argument("--burst", type=int, default=0,
                        help="instead of steady rates: this many changes published at once (a drop's burst)")
    parser.add_argument("--per-publish", type=int, default=10, help="with --burst: changes in each publish")
    parser.add_argument("--group-size", type=int, default=16,
                        help="with --burst: the nodes of each relay's group, in the burst through relays")
    parser.add_argument("--relays-only", action="store_true",
                        help="with --burst: no baseline (to profile the relays' path; its figures need the baseline)")
    args = parser.parse_args()
    node_counts = [int(n) for n in args.nodes.split(",")]
    rates = [float(r) for r in args.rates.split(",")]

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sinks = [Sink.remote() for _ in range(SINK_PROCESSES)]
        # (the baseline: the replication actor calls every cache itself, up to 1,024 of them)
        replicator = SinkReplicator.remote(Settings(database_url="sqlite://", cluster="none", replication_group_size=1024),
                                           lambda: None, 3600.0)
        bare, publisher = BareFanOut.remote(), Publisher.remote()
        pids = {name: ray.get(actor.pid.remote()) for name, actor in
                (("replicator", replicator), ("bare", bare), ("publisher", publisher))}
        ray.get([sink.pid.remote() for sink in sinks])
        version = 1
        if args.burst:
            grouped = SinkReplicator.remote(Settings(database_url="sqlite://", cluster="none",
                                                     replication_group_size=args.group_size), lambda: None, 3600.0)
            grouped_pid = ray.get(grouped.pid.remote())
            print(f"the replication actor through relays: pid {grouped_pid}", flush=True)
            print(f"{'path':>13} {'nodes':>5} {'changes':>8} {'a publish':>9} {'everywhere':>10} {'carried/s':>10} "
                  f"{'its CPU s':>9} {'us/deliv':>8} {'relays':>6} {'their CPU s':>11}")
            for nodes in node_counts:
                paths = [("to each cache", replicator, pids["replicator"]), ("through relays", grouped, grouped_pid)]
                for name, target, pid in paths[1:] if args.relays_only else paths:
                    figures = burst_step(target, pid, publisher, sinks, nodes, args.burst, args.per_publish, version)
                    version += args.burst
                    took = figures["everywhere_s"]
                    print(f"{name:>13} {nodes:>5} {args.burst:>8,} {args.per_publish:>9} "
                          f"{'-' if took is None else format(took, '.2f') + ' s':>10} {figures['carried'] or 0:>10,.0f} "
                          f"{figures['cpu_s']:>9.1f} {figures['us_per_delivery'] or 0:>8.2f} {figures['relays']:>6} "
                          f"{figures['relays_cpu_s']:>11.1f}", flush=True)
            return
        print(f"{'target':11} {'nodes':>5} {'offered':>7} {'achieved':>8} {'carried/s':>10} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'late':>6} {'core':>6} {'pub.':>6} {'us/deliv':>8}")
        # The publisher's ceiling: a target that delivers nothing.
        for rate in rates:
            figures = step(bare, pids["bare"], publisher, pids["publisher"], sinks, 0, rate, args.seconds, version)
            version += figures["changes"]
            print(line("no caches", figures), flush=True)
        for nodes in node_counts:
            for rate in rates:
                for name, target in (("bare", bare), ("replicator", replicator)):
                    if name == "bare" and nodes * rate > BARE_MOST:
                        print(f"{name:11} {nodes:>5} {rate:>7,.0f}  (not run: past {BARE_MOST:,} calls a second)")
                        continue
                    figures = step(target, pids[name], publisher, pids["publisher"], sinks, nodes, rate, args.seconds,
                                   version)
                    version += figures["changes"]
                    print(line(name, figures), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
