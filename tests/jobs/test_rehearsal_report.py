"""A rehearsal's report from hand-made rows: a push that some open socket never had is missed (and
a join that said it already is not), a size sold out whose push reached nobody is missed by every
socket open then, and the visits that never got to buy are counted."""

from __future__ import annotations

import pytest

from sneakers23.jobs.event_log import Row
from sneakers23.jobs.rehearsal_report import arrivals, queue_figures, release_push, sold_out_pushes, visits

T = 1_000.0  # the release time


def joined(shopper: int, at: float) -> Row:
    return Row(shopper, "request", "join", at, 2.0, "ok", None, None)


def closed(shopper: int, at: float) -> Row:
    return Row(shopper, "visit", "socket_closed", at, None, "closed", None, None)


def pushed(shopper: int, at: float, event: str = "released", item_id: int | None = None) -> Row:
    return Row(shopper, "push", event, at, None, "received", item_id, "out" if item_id else None)


def test_a_socket_open_all_along_without_the_release_push_is_missed():
    rows = [joined(0, T - 5), joined(1, T - 5), joined(2, T - 5), joined(3, T + 2),
            pushed(0, T + 0.2), pushed(1, T + 0.4),
            closed(2, T + 1.0)]  # 2: open until after the last push, never told
    figures = release_push(rows, T)
    assert figures["sockets"] == 2 and figures["missed"] == 1
    assert figures["p50_ms"] == pytest.approx(300.0)
    # A socket closed before the last push reached anyone may have closed before its node had it:
    # not counted; a join that answered "released" told it.
    assert release_push(rows[:-1] + [closed(2, T + 0.3)], T)["missed"] == 0
    told_at_join = Row(2, "state", "join", T + 0.1, None, "released", None, None)
    assert release_push(rows + [told_at_join], T)["missed"] == 0


def test_each_size_sold_out_is_checked_even_when_its_push_reached_no_socket():
    rows = [joined(0, T - 5), joined(1, T - 5), joined(2, T + 1.5),
            Row(0, "request", "purchase", T + 1.0, 20.0, "sold", 14, None),
            pushed(0, T + 1.1, "stock_change", 14), pushed(1, T + 1.2, "stock_change", 14),
            Row(1, "request", "purchase", T + 2.0, 20.0, "sold", 15, None)]  # 15 sold out: no push at all
    figures = sold_out_pushes(rows, sold_out=[14, 15])
    assert figures["sizes_sold_out"] == 2 and figures["pushes"] == 2
    # 14: told to both sockets open then; 15: nobody told, and three sockets were open after its sale.
    assert figures["missed_per_item"] == {"15": 3} and figures["missed"] == 3
    # A join after the sell-out that said the size was out told that socket.
    said_out = [Row(n, "state", "join", T + 2.5, None, "out", 15, "out") for n in range(3)]
    assert sold_out_pushes(rows + said_out, sold_out=[14, 15])["missed"] == 0


def test_the_visits_that_never_bought_are_counted():
    rows = [Row(0, "request", "page", T, 5.0, "http 503", None, None),
            Row(1, "request", "socket", T, None, "http 429", None, None),
            Row(2, "visit", "leave", T, None, "left", None, None),
            Row(3, "visit", "release", T, None, "never seen", None, None),
            Row(4, "visit", "socket_closed", T, None, "by the store", None, None),
            Row(5, "visit", "socket_closed", T, None, "closed", None, None),
            Row(5, "visit", "arrive", T - 1, 3.0, "ok", None, None)]  # (an arrival ends nothing)
    assert visits(rows) == {"refused": {"page http 503": 1, "socket http 429": 1},
                            "ended": {"leave: left": 1, "release: never seen": 1},
                            "sockets_closed_by_the_store": 1}


def test_how_far_behind_their_plan_the_shoppers_arrived_is_the_generators_own_lag():
    rows = [Row(n, "visit", "arrive", T - 1, float(lag), "ok", None, None) for n, lag in enumerate(range(0, 1_000, 10))]
    rows.append(Row(100, "visit", "arrive", T, 4_000.0, "ok", None, None))
    rows.append(Row(0, "request", "page", T, 900.0, "ok", None, None))  # (a request's latency is no lag)
    figures = arrivals(rows)
    assert figures["shoppers"] == 101 and figures["late_max_ms"] == 4_000.0
    assert (figures["late_p50_ms"], figures["late_p99_ms"]) == (pytest.approx(500.0), pytest.approx(990.0))
    assert arrivals([]) == {"shoppers": 0, "late_p50_ms": None, "late_p99_ms": None, "late_max_ms": None}


def place(shopper: int, at: float, stage: str, position: int | None = None, sold_out: bool = False,
          kind: str = "push") -> Row:
    return Row(shopper, kind, "place", at, None, stage, None, "sold_out" if sold_out else None, 0, position)


def test_a_queues_figures_come_from_what_each_shopper_in_line_was_told():
    rows = [place(0, T - 5, "pre_queue", kind="state"), place(0, T + 0.2, "queue", 2), place(0, T + 3.2, "queue", 1),
            place(0, T + 4.0, "admitted"),
            place(1, T - 4, "pre_queue", kind="state"), place(1, T + 0.4, "admitted"),  # let in at the release
            place(2, T - 3, "pre_queue", kind="state"), place(2, T + 0.3, "queue", 3), place(2, T + 5.3, "queue", 2, True),
            place(3, T + 1, "queue", 4, kind="state"),  # came after the release, never told anything more
            place(4, T - 2, "pre_queue", kind="state"), Row(4, "visit", "leave", T - 1, None, "left", None, None)]
    figures = queue_figures(rows, T)
    assert (figures["places"], figures["admitted"], figures["told_sold_out"], figures["untold"]) == (5, 2, 1, 1)
    assert figures["pre_queued"] == 4  # (all but shopper 3, who came after the release)
    # From the release to the first word after it, for the three who waited in the pre-queue and stayed.
    assert figures["first_position_p50_ms"] == pytest.approx(300.0)
    # Shopper 2 waited 5 s between two words (until the one that said the pairs were gone); shopper
    # 0 3 s, then 0.8 s for its turn.
    assert figures["position_gap_max_ms"] == pytest.approx(5000.0)
    # One that heard nothing more until it gave up waited all that while.
    gave_up = Row(3, "visit", "turn", T + 20, None, "never came", None, None)
    assert queue_figures(rows + [gave_up], T)["position_gap_max_ms"] == pytest.approx(19_000.0)
    # One whose visit ended on an error (a request unanswered) is counted apart, not as untold.
    failed = queue_figures(rows + [Row(3, "visit", "error", T + 2, None, "TimeoutError", None, None)], T)
    assert (failed["untold"], failed["ended_on_an_error"]) == (0, 1)


def test_each_machines_cpu_is_split_into_the_shoppers_share_and_the_rest():
    from sneakers23.jobs.rehearsal_report import machines
    from sneakers23.jobs.shoppers import machine_busy_s

    results = [{"cpu_s": 10.0, "machine": {"address": "10.0.0.1", "cores": 2, "seconds": 50.0, "busy_cpu_s": 60.0}},
               {"cpu_s": 5.0, "machine": {"address": "10.0.0.1", "cores": 2, "seconds": 49.0, "busy_cpu_s": 58.0}},
               {"cpu_s": 4.0, "machine": {"address": "10.0.0.2", "cores": 4, "seconds": 50.0, "busy_cpu_s": None}}]
    shown = machines(results)
    first = shown["10.0.0.1"]  # (the longest window of the two actors on it; both actors' CPU)
    assert (first["busy_share"], first["shoppers_share"], first["rest_share"]) == pytest.approx((0.6, 0.15, 0.45))
    assert shown["10.0.0.2"]["busy_share"] is None  # (no /proc/stat there)
    assert machine_busy_s() > 0  # (this machine's, since it started)
