"""A rehearsal's report, from its event log's rows (jobs/event_log.py): the drop's figures (the
stampede's report, jobs/report.py), each step's p50/p99, the pushes and the sockets that missed
them, how the visits went and how late the shoppers arrived, each machine's CPU, a queue's line and
a draw's outcomes as the shoppers were told them; and the invariants they must keep."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sneakers23.jobs import drop_charts, event_log
from sneakers23.jobs.report import Attempt, DropReport, Invariant, build_report, percentile

LAGGING_MS = 1_000.0  # shoppers this far behind their plan (p99): the generator, not the store, set the pace
UNTOLD_AFTER_S = 1.0  # a size sold out whose push reached no socket: those open this long after its last sale missed it
SALES_STEPS = ("purchase", "checkout", "draw")  # a shopper's try for a pair (a draw's: its entry's outcome)


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
                f"queue: {self.queue['places']} places ({self.queue['pre_queued']} taken before the release), "
                f"{self.queue['admitted']} let in, {self.queue['told_sold_out']} told "
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
              f" (and the freezer's collection once the drop was over: {figures.get('planned_pause_ms', 0):.0f} ms)"
              for node, figures in sorted(self.channel_replicas.items())),
        ])


def drop_report(rows: list[event_log.Row], release_at: float, ended_at: float, before, after,
            max_pairs: int) -> RehearsalReport:
    attempts = [Attempt(row.item_id, row.outcome if row.outcome == "sold" or not row.outcome.startswith("http")
                        else "error", row.latency_ms, row.at, row.retries)
                for row in rows if row.kind == "request" and row.step in SALES_STEPS]
    report = RehearsalReport(**vars(build_report("rehearsal", attempts, release_at, ended_at - release_at, before,
                                                 after, max_pairs)))
    _steps(report, rows, drop_charts.STEPS)
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


def _steps(report: RehearsalReport, rows: list, steps: tuple[str, ...]) -> None:
    """A mode's own steps' counts and p50/p99, beside the drop's (a proof of work is `work`, not a request)."""
    for step in steps:
        values = [row.latency_ms for row in rows if row.kind in ("request", "work") and row.step == step]
        report.steps[step] = {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}


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
    starved of CPU, is late to start it. A p99 past a second says the figures measure the
    load generator as much as the store."""
    lags = [row.latency_ms for row in rows if row.kind == "visit" and row.step == "arrive"]
    return {"shoppers": len(lags), "late_p50_ms": percentile(lags, 50), "late_p99_ms": percentile(lags, 99),
            "late_max_ms": max(lags, default=None)}


def queue_figures(rows: list, release_at: float) -> dict:
    """A queued drop's line as its shoppers were told it (their places' pushes and join answers):
    the places taken, and how many before the release (in the pre-queue); from the release time
    to each pre-queued shopper's first word of where it stands (a position, or its turn); the
    longest each waited between two words while in line, up to its turn, the word that the pairs
    were gone, or the end of its visit; who was let in, who was told the pairs were gone (and how
    that word spread over those in line then), and who in line was never told either."""
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
    first_told, gaps, pre_queued = [], [], 0
    admitted = {shopper for shopper, places in seen.items() if any(p.outcome == "admitted" for p in places)}
    # (a place bought, ended or taken out says its wait is over too: one let in and bought at once
    # may never see its admitted word)
    over = {shopper for shopper, places in seen.items() if any(p.outcome in ("bought", "expired", "removed") for p in places)}
    told_out = {shopper: min(p.at for p in places if p.level == "sold_out")
                for shopper, places in seen.items() if any(p.level == "sold_out" for p in places)}
    in_line = {shopper for shopper, places in seen.items() if any(p.outcome in ("queue", "pre_queue") for p in places)}
    told = admitted | over | set(told_out) | left_early  # (or left before it had to be)
    for shopper, places in seen.items():
        places.sort(key=lambda p: p.at)
        after = [p for p in places if p.at >= release_at and (p.outcome == "admitted" or p.position is not None)]
        if any(p.outcome == "pre_queue" and p.at < release_at for p in places):
            pre_queued += 1
            if after:
                first_told.append((after[0].at - release_at) * 1000)
        ends = [p.at for p in places if p.outcome == "admitted" or p.level == "sold_out"]
        end = ends[0] if ends else last_seen[shopper]  # (its turn, the pairs gone, or the end of its visit)
        marks = [p.at for p in places if p.outcome == "queue" and p.at < end]
        if marks:
            marks.append(end)
            gaps.append(max((b - a) * 1000 for a, b in zip(marks, marks[1:])))
    return {"places": len(seen), "pre_queued": pre_queued, "admitted": len(admitted), "told_sold_out": len(told_out),
            "untold": len(in_line - told - failed), "ended_on_an_error": len((in_line & failed) - told),
            "first_position_p50_ms": percentile(first_told, 50), "first_position_p99_ms": percentile(first_told, 99),
            "position_gap_p99_ms": percentile(gaps, 99), "position_gap_max_ms": max(gaps, default=None),
            "sold_out_told_p99_ms": percentile(_sold_out_spread_ms(seen, told_out), 99)}


def _sold_out_spread_ms(seen: dict[int, list], told_out: dict[int, float]) -> list[float]:
    """How long after the first sold-out word each shopper already in line then had it (a later
    arrival's join said it at once)."""
    first_out = min(told_out.values(), default=0.0)
    in_line_then = {shopper for shopper, places in seen.items() if any(p.at < first_out for p in places)}
    return [(at - first_out) * 1000 for shopper, at in told_out.items() if shopper in in_line_then or at == first_out]


def with_the_queue(report: RehearsalReport, rows: list, release_at: float, sold_outside_turns: int) -> None:
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
    release (the close) each page showed its outcome (read when the draw's end was pushed, as the
    page reads it, or every 15 s without the push)."""
    entered = {row.shopper for row in rows if row.kind == "request" and row.step == "enter" and row.outcome == "ok"}
    refused = Counter(row.outcome for row in rows if row.kind == "request" and row.step == "enter" and row.outcome != "ok")
    told = [row for row in rows if row.kind == "request" and row.step == "draw"]
    never = len(entered - {row.shopper for row in told})  # (gave up asking, or stopped before it could)
    waits = [row.latency_ms for row in told]
    return {"entries": len(entered), "refused": dict(refused), "outcomes": dict(Counter(row.outcome for row in told)),
            "never_told": never, "told_p50_ms": percentile(waits, 50), "told_p99_ms": percentile(waits, 99),
            "told_last_ms": max(waits, default=None)}


def with_the_draw(report: RehearsalReport, rows: list) -> None:
    """A draw's figures, and its rule as an invariant: every entrant's page learnt its outcome.
    (That every pair sold went to an entrant drawn for it is the first invariant's: the pairs
    sold, counted from the outcomes the entrants were told, are the database's.)"""
    report.draw = draw_figures(rows)
    _steps(report, rows, ("draw_view", "proof", "enter", "draw_check", "draw"))  # (the draw read, the work, the entry, the outcome)
    never = report.draw["never_told"]
    report.invariants.append(Invariant("every entrant's page learnt its outcome", never == 0,
                                       f"{never} never told" if never else ""))
