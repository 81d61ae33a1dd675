"""A replica's loop stalls: a callback that holds the loop is seen, as long as it held it; a full
collection is counted and timed; the last minute's figure forgets what is older."""

from __future__ import annotations

import asyncio
import gc
import time

from sneakers23.loop_stalls import WAKE_EVERY_S, YOUNG_COLLECTION_AFTER, Freezer, LoopStalls, collect_young_less_often
from tests.support import aio


def test_a_callback_that_holds_the_loop_is_seen_as_long_as_it_held_it():
    stalls = LoopStalls()

    async def main():
        watching = asyncio.get_running_loop().create_task(stalls.watch_forever())
        await asyncio.sleep(0.1)
        quiet = stalls.figures()["loop_stall_ms"]
        time.sleep(0.25)  # (the stall being measured: the loop can run nothing else meanwhile)
        await asyncio.sleep(WAKE_EVERY_S * 3)  # (the watcher's next wake-up, late by the stall)
        watching.cancel()
        return quiet

    quiet = aio.run(main())  # (in a thread of its own: a Chromium test of this worker may keep a loop running here)
    figures = stalls.figures()
    assert quiet < 200
    assert 250 - WAKE_EVERY_S * 1000 <= figures["loop_stall_ms"] < 1000
    assert figures["loop_stall_ever_ms"] == figures["loop_stall_ms"]


def test_a_full_collection_is_counted_and_timed():
    stalls = LoopStalls()
    gc.disable()  # (none but ours: the allocations below would start some)
    stalls.watch_collections()
    try:
        garbage = [[n] for n in range(200_000)]  # (objects the collector must visit)
        gc.collect(1)  # (not a full one: not counted)
        assert stalls.full_collections == 0
        gc.collect()
        del garbage
    finally:
        stalls.stop_watching_collections()
        gc.enable()
    figures = stalls.figures()
    assert figures["full_collections"] == 1 and figures["full_collection_ms"] > 0
    assert figures["full_collection_ever_ms"] == figures["full_collection_ms"]


def test_the_last_minutes_figure_forgets_what_is_older():
    stalls = LoopStalls(window_s=60)
    stalls.note(300.0, now=1000.0)
    stalls.note(40.0, now=1030.0)
    stalls.note(10.0, now=1031.0)
    assert stalls.figures(now=1050.0)["loop_stall_ms"] == 300.0
    assert stalls.figures(now=1070.0)["loop_stall_ms"] == 40.0  # (300 ms was 70 s ago)
    assert stalls.figures(now=1095.0)["loop_stall_ms"] == 0.0
    assert stalls.figures(now=1095.0)["loop_stall_ever_ms"] == 300.0
    for stall_ms in (10.0, 40.0, 300.0):
        stalls.note(stall_ms, now=1100.0)
    assert len(stalls._recent) == 1  # a longer stall drops the shorter ones before it: a short queue


def test_the_freezer_freezes_each_200_new_sockets_and_collects_once_half_the_frozen_have_closed():
    from sneakers23.loop_stalls import FREEZE_AFTER_NEW_SOCKETS, Freezer

    frozen_before = gc.get_freeze_count()
    freezer = Freezer()
    try:
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS - 1, closed=0)
        assert freezer.freezes == 0 and gc.get_freeze_count() == frozen_before
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS, closed=0)
        assert freezer.freezes == 1 and gc.get_freeze_count() > frozen_before  # out of later collections
        # Churn during a drop: half the frozen sockets close, as many new ones open: no long pause.
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + 100, closed=100)
        assert (freezer.freezes, freezer.refreezes) == (1, 0)
        # The drop is over: most have gone. (Not while a push is going out.)
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + 150, closed=300, busy=True)
        assert freezer.refreezes == 0
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + 150, closed=300)
        assert freezer.refreezes == 1 and freezer.open_at_freeze == 50
        assert gc.get_freeze_count() > 0  # (frozen again, start-up and live sockets with it)
        # A long busy hour: four turnovers of what was open at the last freeze, however many are open.
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + 150 + 199, closed=300 + 199)
        assert freezer.refreezes == 1  # (199 closed: about four turnovers of 50)
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + 150 + 199, closed=300 + 200)
        assert freezer.refreezes == 2
    finally:
        gc.unfreeze()


def test_a_few_tabs_coming_and_going_never_cost_a_full_collection():
    from sneakers23.loop_stalls import FREEZE_AFTER_NEW_SOCKETS, Freezer

    freezer = Freezer()
    try:
        freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS, closed=FREEZE_AFTER_NEW_SOCKETS - 2)  # (2 open)
        assert freezer.freezes == 1 and freezer.open_at_freeze == 2
        for closes in range(1, FREEZE_AFTER_NEW_SOCKETS):  # (page views: a tab opens and closes)
            freezer.check(opened=FREEZE_AFTER_NEW_SOCKETS + closes, closed=FREEZE_AFTER_NEW_SOCKETS - 2 + closes)
        assert (freezer.freezes, freezer.refreezes) == (1, 0)
        freezer.check(opened=2 * FREEZE_AFTER_NEW_SOCKETS, closed=2 * FREEZE_AFTER_NEW_SOCKETS - 2)
        assert freezer.freezes + freezer.refreezes == 2  # (200 more: one freeze, or one collection)
    finally:
        gc.unfreeze()


def test_the_freezers_collection_once_a_drop_is_over_is_timed_apart_from_the_stalls():
    """A pause made on purpose (the freezer's unfreeze, collect and freeze again, once a drop is
    over) is not what a shopper waits for unawares: it is timed as such, and left out of the stalls
    and of the full collections, which keep saying what the drop itself cost."""
    stalls = LoopStalls()
    freezer = Freezer(stalls)
    gc.disable()  # (no collection but the freezer's: the allocations below would start some)
    stalls.watch_collections()
    sockets = [[[n]] for n in range(1_000_000)]  # (what the collector must walk once it is unfrozen)

    async def main() -> float:
        watching = asyncio.get_running_loop().create_task(stalls.watch_forever())
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        freezer.check(opened=400, closed=300)  # (three in four closed: the drop is over)
        took_ms = (time.perf_counter() - started) * 1000
        await asyncio.sleep(WAKE_EVERY_S * 3)  # (the watcher's next wake-up, late by the pause)
        watching.cancel()
        return took_ms

    try:
        freezer.check(opened=400, closed=0)  # (400 open: frozen, before the watching: its young collection is a stall)
        took_ms = aio.run(main())
    finally:
        stalls.stop_watching_collections()
        gc.unfreeze()
        gc.enable()
    del sockets
    figures = stalls.figures()
    assert freezer.refreezes == 1 and took_ms > 60  # (a pause worth telling apart)
    assert figures["planned_pause_ms"] >= took_ms * 0.9, (took_ms, figures)
    assert figures["loop_stall_ms"] < took_ms / 2, (took_ms, figures)  # (the quiet loop's own stalls, without it)
    assert figures["full_collections"] == 0  # (the freezer's own collection is not the drop's)


def test_in_a_busy_hour_the_garbage_of_closed_sockets_is_collected_after_four_turnovers_as_a_stall():
    """New sockets keep coming, so the freezer freezes every 200 of them; the turnovers are
    counted from the last full collection across those freezes, and that collection, made while
    shoppers are connected, is a stall like any other (not a pause on purpose)."""
    from sneakers23.loop_stalls import COLLECT_ANYWAY_AFTER_TURNOVERS, FREEZE_AFTER_NEW_SOCKETS

    stalls = LoopStalls()
    freezer = Freezer(stalls)
    try:
        opened, closed = 1_000, 0
        freezer.check(opened, closed)
        assert freezer.freezes == 1
        while freezer.refreezes == 0 and closed < 10 * COLLECT_ANYWAY_AFTER_TURNOVERS * 1_000:
            opened, closed = opened + FREEZE_AFTER_NEW_SOCKETS, closed + FREEZE_AFTER_NEW_SOCKETS
            freezer.check(opened, closed)  # (1,000 open all along; 200 new at every check: a freeze each time)
        assert freezer.refreezes == 1 and freezer.freezes > 10
        assert COLLECT_ANYWAY_AFTER_TURNOVERS * 1_000 <= closed <= (COLLECT_ANYWAY_AFTER_TURNOVERS + 1) * 1_000
        assert stalls.figures()["planned_pause_ms"] == 0.0  # (shoppers are connected: not on purpose)
    finally:
        gc.unfreeze()


def test_young_collections_wait_for_50000_new_objects_so_a_pass_over_10000_tabs_sets_off_none():
    """A release's pass makes about two lasting objects a tab: at Python's 700 a young collection
    came every 350 tabs."""
    before = gc.get_threshold()
    started: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    try:
        collect_young_less_often()
        assert gc.get_threshold() == (YOUNG_COLLECTION_AFTER, *before[1:])
        gc.collect()  # (from none)
        gc.callbacks.append(count)
        kept = [{"place": n} for n in range(20_000)]
        assert started == [] and len(kept) == 20_000
        kept += [{"place": n} for n in range(YOUNG_COLLECTION_AFTER)]
        assert started  # (past the threshold: a young collection)
    finally:
        gc.set_threshold(*before)
        if count in gc.callbacks:
            gc.callbacks.remove(count)
