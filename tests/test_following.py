"""Following from a cursor (sneakers23/following.py): the bell, the follower's loop, and a load
that keeps what arrives meanwhile. In milliseconds."""

from __future__ import annotations

import asyncio
import time

import pytest

from sneakers23.following import Bell, KeptDuringLoad, follow
from tests.support.aio import run


def test_a_read_with_news_is_answered_at_once():
    async def scenario():
        started = time.monotonic()
        answer = await Bell().read_when_news(lambda: [1], bool, timeout_s=5)
        return answer, time.monotonic() - started

    answer, took = run(scenario())
    assert answer == [1] and took < 1


def test_a_read_without_news_waits_for_the_bell_then_reads_again():
    async def scenario():
        bell, news = Bell(), []
        reads = 0

        def read():
            nonlocal reads
            reads += 1
            return list(news)

        waiting = asyncio.create_task(bell.read_when_news(read, bool, timeout_s=5))
        while reads == 0:
            await asyncio.sleep(0)
        bell.ring()  # rung with nothing new: it reads again, and waits on
        await asyncio.sleep(0.01)
        assert not waiting.done()
        news.append("release")
        bell.ring()
        return await waiting, reads

    answer, reads = run(scenario())
    assert answer == ["release"] and reads == 3


def test_a_read_without_news_ends_empty_when_its_wait_runs_out():
    async def scenario():
        started = time.monotonic()
        answer = await Bell().read_when_news(lambda: [], bool, timeout_s=0.05)
        return answer, time.monotonic() - started

    answer, took = run(scenario())
    assert answer == [] and 0.04 <= took < 2


def test_a_follower_asks_again_from_where_each_answer_left_it_until_an_error():
    feed = ["a", "b", "c"]
    asked, taken = [], []

    async def read_after(epoch, cursor):
        asked.append((epoch, cursor))
        if cursor >= len(feed):
            raise ConnectionError("the cache restarted")
        return feed[cursor]

    def take(change):
        taken.append(change)
        return "e1", len(taken)

    with pytest.raises(ConnectionError):
        run(follow(read_after, take, "e1", 0))
    assert taken == ["a", "b", "c"] and asked == [("e1", 0), ("e1", 1), ("e1", 2), ("e1", 3)]


def test_what_arrives_during_a_load_is_kept_and_nothing_outside_one():
    async def scenario():
        kept: KeptDuringLoad[int] = KeptDuringLoad()
        kept.note([1])  # (no load: nothing kept)
        loading = asyncio.Event()

        async def load():
            loading.set()
            await asyncio.sleep(0.01)
            return "catalog"

        during = asyncio.create_task(kept.load(load))
        await loading.wait()
        assert kept.loading
        kept.note([2, 3])
        loaded = await during
        kept.note([4])
        return loaded, kept.loading

    (catalog, arrived), loading = run(scenario())
    assert catalog == "catalog" and arrived == [2, 3] and not loading


def test_a_failed_load_keeps_nothing_for_the_next():
    async def scenario():
        kept: KeptDuringLoad[int] = KeptDuringLoad()

        async def fails():
            kept.note([1])
            raise RuntimeError("the database is away")

        with pytest.raises(RuntimeError):
            await kept.load(fails)
        return kept.loading

    assert run(scenario()) is False
