"""The one group commit (sneakers23/group_commit.py): batching, each request's own outcome, the
bounds, cancellation and shutdown. In milliseconds, with a commit the test opens and closes."""

from __future__ import annotations

import asyncio

import pytest

from sneakers23.group_commit import GroupCommit
from harness.waiting import until
from tests.support.aio import run


class CutShort(Exception):
    pass


class Full(Exception):
    pass


class Gate:
    """A commit that records each batch and waits until the test lets it through."""

    def __init__(self, outcome=lambda request: request * 10):
        self.batches: list[list[int]] = []
        self.open = asyncio.Event()
        self.outcome = outcome
        self.under_way = 0
        self.most_under_way = 0

    async def __call__(self, batch):
        self.batches.append(list(batch))
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            await self.open.wait()
        finally:
            self.under_way -= 1
        return [self.outcome(request) for request in batch]


def group(gate, **options) -> GroupCommit:
    return GroupCommit(gate, cut_short=lambda: CutShort("cut short"), **options)


def test_a_lone_request_goes_at_once_and_those_arriving_meanwhile_go_together():
    async def scenario():
        gate = Gate()
        commits = group(gate)
        first = commits.submit(1)
        await until(lambda: gate.batches)
        later = [commits.submit(n) for n in (2, 3, 4)]
        assert commits.waiting == 3
        gate.open.set()
        return gate.batches, await first, await asyncio.gather(*later)

    batches, first, later = run(scenario())
    assert batches == [[1], [2, 3, 4]]
    assert first == 10 and later == [20, 30, 40]


def test_an_outcome_that_is_an_error_fails_its_request_alone_and_a_commit_that_raises_fails_its_batch():
    async def scenario():
        calls = 0

        async def commit(batch):
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("the database went away")
            return [ValueError(f"bad {r}") if r == 2 else r for r in batch]

        commits = group(commit, max_batch=3)
        answers = [commits.submit(n) for n in range(1, 7)]
        return await asyncio.gather(*answers, return_exceptions=True)

    outcomes = run(scenario())
    assert outcomes[0] == 1 and outcomes[2] == 3
    assert isinstance(outcomes[1], ValueError)
    assert all(isinstance(o, RuntimeError) for o in outcomes[3:]), "the second batch of three"


def test_batches_hold_at_most_max_batch_and_at_most_in_flight_are_under_way():
    async def scenario():
        gate = Gate()
        commits = group(gate, max_batch=2, in_flight=3)
        answers = [commits.submit(n) for n in range(10)]
        await until(lambda: gate.under_way == 3)
        gate.open.set()
        await asyncio.gather(*answers)
        return gate

    gate = run(scenario())
    assert all(len(batch) <= 2 for batch in gate.batches)
    assert sorted(r for batch in gate.batches for r in batch) == list(range(10))
    assert gate.most_under_way == 3


def test_past_its_bound_a_request_is_refused_at_once():
    async def scenario():
        gate = Gate()
        commits = group(gate, bound=2, refuse=lambda: Full("try again"))
        first = commits.submit(1)
        await until(lambda: gate.batches)  # under way: no longer waiting
        commits.submit(2), commits.submit(3)
        with pytest.raises(Full):
            commits.submit(4)
        gate.open.set()
        await commits.idle()
        return await first

    assert run(scenario()) == 10


def test_a_caller_that_goes_away_leaves_its_batch_alone():
    async def scenario():
        gate = Gate()
        commits = group(gate)
        leaving = asyncio.create_task(commits.ask(1))
        staying = asyncio.create_task(commits.ask(2))
        await until(lambda: gate.batches)
        leaving.cancel()
        gate.open.set()
        return await staying, gate.batches

    assert run(scenario()) == (20, [[1, 2]])


def test_closed_mid_batch_every_request_is_cut_short_and_none_waits_for_ever():
    async def scenario():
        gate = Gate()
        commits = group(gate)
        under_way = commits.submit(1)
        await until(lambda: gate.batches)
        waiting = commits.submit(2)
        await commits.close()
        after = commits.submit(3)
        return await asyncio.gather(under_way, waiting, after, return_exceptions=True)

    assert all(isinstance(outcome, CutShort) for outcome in run(scenario()))


def test_a_cancelled_runner_cuts_short_its_batch_and_what_waits_and_says_which():
    let_go: list[int] = []

    async def scenario():
        gate = Gate()
        commits = GroupCommit(gate, cut_short=lambda: CutShort("cut short"), on_cut_short=let_go.extend)
        answers = [commits.submit(1)]
        await until(lambda: gate.batches)
        answers.append(commits.submit(2))
        for runner in list(commits._runners):  # (the process stopping cancels every task)
            runner.cancel()
        return await asyncio.gather(*answers, return_exceptions=True)

    assert all(isinstance(outcome, CutShort) for outcome in run(scenario()))
    assert sorted(let_go) == [1, 2], "what they held can be let go"


def test_before_runs_ahead_of_each_batch_and_when_kicked_and_its_failure_fails_what_waits():
    async def scenario():
        seen: list[str] = []
        fail = False

        async def before():
            seen.append("before")
            if fail:
                raise RuntimeError("the reload met the database away")

        async def commit(batch):
            seen.append(f"commit {batch}")
            return batch

        commits = group(commit, before=before, gather_s=0.001)
        assert await asyncio.gather(commits.submit(1), commits.submit(2)) == [1, 2]
        commits.kick()
        await commits.idle()
        fail = True
        failed = await asyncio.gather(commits.submit(3), return_exceptions=True)
        return seen, failed

    seen, failed = run(scenario())
    assert seen == ["before", "commit [1, 2]", "before", "before", "before"]
    assert isinstance(failed[0], RuntimeError)


def test_requests_sent_without_an_answer_are_committed_too():
    async def scenario():
        committed = []

        async def commit(batch):
            committed.extend(batch)
            return None

        commits = group(commit)
        commits.send([1, 2])
        commits.send([3])
        await commits.idle()
        return committed

    assert run(scenario()) == [1, 2, 3]


def test_one_by_one_a_bad_request_fails_alone_and_the_database_away_stops_the_rest():
    from sneakers23.group_commit import one_by_one

    tried = []

    def commit_one(request):
        tried.append(request)
        if request == 2:
            raise ValueError("a bad one")
        if request == 4:
            raise ConnectionError("the database is away")
        return request * 10

    outcomes = one_by_one([1, 2, 3, 4, 5, 6], commit_one, stops_all=(ConnectionError,))
    assert outcomes[0] == 10 and isinstance(outcomes[1], ValueError) and outcomes[2] == 30
    assert all(isinstance(o, ConnectionError) for o in outcomes[3:]) and len(outcomes) == 6
    assert tried == [1, 2, 3, 4], "none tried after the database went away"
    with pytest.raises(KeyError):
        one_by_one([1], lambda _r: {}["missing"], fails_alone=(ValueError,))
