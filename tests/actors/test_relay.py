"""Replication by node group, the rules alone: how nodes are grouped, and how changes are carried to a
set of receivers (the replication actor's caches or relays, a relay's caches). On a real cluster,
through relays: tests/actors/test_replication.py (the session's cluster has groups of two)."""

from __future__ import annotations

import asyncio

from sneakers23.actors.deliveries import Deliveries, Fault, changes_in
from sneakers23.actors.relay import regrouped
from sneakers23.domain.changes import AvailabilityChanged
from tests.support.aio import run


def test_nodes_are_grouped_up_to_the_size_and_a_node_keeps_its_group_while_it_lives():
    groups = regrouped({}, [f"n{k}" for k in range(5)], 2)
    assert groups == {"group-0": ["n0", "n1"], "group-1": ["n2", "n3"], "group-2": ["n4"]}

    # n1 and n2 leave, n5 joins: nobody moves, and the new node goes where there is most room.
    after = regrouped(groups, ["n0", "n3", "n4", "n5"], 2)
    assert after == {"group-0": ["n0", "n5"], "group-1": ["n3"], "group-2": ["n4"]}

    # A group left empty goes, and its name is taken again by the next group needed.
    assert regrouped(after, ["n0", "n5", "n4"], 2) == {"group-0": ["n0", "n5"], "group-2": ["n4"]}
    assert regrouped({"group-0": ["a", "b"], "group-2": ["c", "d"]}, ["a", "b", "c", "d", "e"], 2) == \
        {"group-0": ["a", "b"], "group-2": ["c", "d"], "group-1": ["e"]}
    # A smaller size cuts a group down (the rest placed again), and a cluster that shrank to far
    # fewer nodes than its groups were made for is grouped afresh.
    assert regrouped({"group-0": ["a", "b", "c"]}, ["a", "b", "c"], 2) == {"group-0": ["a", "b"], "group-1": ["c"]}
    scattered = {f"group-{k}": [f"n{k}"] for k in range(10)}
    assert regrouped(scattered, [f"n{k}" for k in range(10)], 4) == \
        {"group-0": ["n0", "n1", "n2", "n3"], "group-1": ["n4", "n5", "n6", "n7"], "group-2": ["n8", "n9"]}
    assert all(len(members) <= 16 for members in regrouped({}, [f"n{k:03}" for k in range(529)], 16).values())
    assert len(regrouped({}, [f"n{k:03}" for k in range(529)], 16)) == 34


def change(version: int) -> AvailabilityChanged:
    return AvailabilityChanged(1, 1, 5, version)


class Receiver:
    """Answers each call when told to: what a slow cache looks like to the one calling it."""

    def __init__(self, fails: bool = False):
        self.calls: list[list[int]] = []
        self.fails = fails
        self.go = asyncio.Event()

    async def take(self, changes):
        self.calls.append([c.version for c in changes])
        await self.go.wait()
        if self.fails:
            raise RuntimeError("its node is gone")


async def call(_receiver_id, receiver: Receiver, batch, _since):
    await receiver.take(changes_in(batch))


def test_a_slow_receiver_gets_what_came_meanwhile_in_one_call_and_delays_no_other():
    async def scenario():
        slow, quick = Receiver(), Receiver()
        quick.go.set()
        deliveries = Deliveries(call)
        deliveries.use({"slow": slow, "quick": quick})
        for version in (1, 2, 3):
            assert deliveries.send([change(version)], reached_at=0.0) == 2
            await asyncio.sleep(0)
        await asyncio.wait_for(_until(lambda: len(quick.calls) == 3), 5)
        assert slow.calls == [[1]]  # under way: the rest wait for it
        assert deliveries.lags()["slow"]["waiting_ms"] > 0
        slow.go.set()
        await asyncio.wait_for(deliveries.idle(), 5)
        assert slow.calls == [[1], [2, 3]]
        assert quick.calls == [[1], [2], [3]]
        assert deliveries.delivered == 5 and deliveries.failed == 0
        assert deliveries.lags()["slow"]["deliveries"] == 2

    run(scenario())


def test_a_failed_call_is_counted_a_dropped_one_never_made_and_a_receiver_let_go_gets_nothing_more():
    async def scenario():
        gone, kept = Receiver(fails=True), Receiver()
        gone.go.set()
        kept.go.set()
        deliveries = Deliveries(call)
        deliveries.use({"gone": gone, "kept": kept})
        deliveries.send([change(1)], reached_at=0.0)
        await asyncio.wait_for(deliveries.idle(), 5)
        assert (deliveries.delivered, deliveries.failed) == (1, 1)

        deliveries.fault = Fault(1.0, "kept")
        assert deliveries.send([change(2)], reached_at=0.0) == 1
        await asyncio.wait_for(deliveries.idle(), 5)
        assert deliveries.dropped == 1 and kept.calls == [[1]] and gone.calls == [[1], [2]]

        deliveries.fault = Fault()
        assert deliveries.send([change(3)], reached_at=0.0, skip=frozenset({"gone"})) == 1  # (a relay's)
        await asyncio.wait_for(deliveries.idle(), 5)
        assert gone.calls == [[1], [2]] and deliveries.dropped == 1  # (counted where it was decided)

        deliveries.use({"kept": kept})
        assert deliveries.send([change(4)], reached_at=0.0) == 1
        await asyncio.wait_for(deliveries.idle(), 5)
        assert gone.calls == [[1], [2]] and kept.calls == [[1], [3], [4]]
        assert set(deliveries.lags()) == {"kept"}

    run(scenario())


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
