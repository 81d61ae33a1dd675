"""A rehearsal's report as one self-contained HTML file: its figures, its invariants, and charts
drawn by matplotlib from the event log alone (so `sneakers23 drop report` draws it again).

matplotlib, because its SVG needs nothing at all to open: no script, no font or file fetched, so
the report opens offline, in any browser, years later. Each chart says in its caption what it shows,
and its lines differ by dash and marker as well as by colour.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter, defaultdict

from sneakers23.jobs.event_log import Log, Row

STEPS = ("page", "join", "add", "checkout", "purchase")
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "x")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # (no display: a job, a CI machine)
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "sneakers23", "figure.figsize": (8, 3.6), "axes.grid": True,
                            "grid.alpha": 0.3, "font.size": 9})
    return pyplot


def _svg(figure, title: str) -> str:
    out = io.StringIO()
    figure.tight_layout()
    # (no metadata: a date would make the same log draw another file; no addresses of vocabularies)
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    _pyplot().close(figure)
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" ', 1)


def _styled(axes, n: int) -> dict:
    line, marker = STYLES[n % len(STYLES)]
    return {"linestyle": line, "marker": marker, "markersize": 3}


def pairs_left(log: Log, release_at: float) -> str:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots()
    sales = defaultdict(list)
    for row in log.rows:
        if row.kind == "request" and row.outcome == "sold" and row.item_id is not None:
            sales[row.item_id].append(row.at - release_at)
    sizes = log.facts["sizes"]
    for n, (item_id, size) in enumerate(sorted(sizes.items(), key=lambda pair: int(pair[0]))):
        times = sorted(sales.get(int(item_id), []))
        left = size["before"]
        xs, ys = [min(0.0, *times) if times else 0.0], [left]
        for t in times:
            left -= 1
            xs.append(t)
            ys.append(left)
        xs.append(max(log.facts["ended_at"] - release_at, xs[-1]))
        ys.append(left)
        axes.step(xs, ys, where="post", label=f"size {size['size']}", **_styled(axes, n))
    axes.set_xlabel("seconds from the release")
    axes.set_ylabel("pairs left")
    axes.legend(fontsize=7, ncol=4)
    return _svg(figure, "Pairs left per size over time")


def _bin_s(log: Log, release_at: float) -> float:
    """A second, or a quarter of one for a drop over in seconds (so that its shape shows)."""
    return 1.0 if log.facts["ended_at"] - release_at > 20 else 0.25


def outcomes_per_second(log: Log, release_at: float) -> str:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots()
    width = _bin_s(log, release_at)
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in log.rows:
        if row.kind == "request" and row.step in ("purchase", "checkout", "draw"):
            counts[row.outcome][int((row.at - release_at) // width)] += 1
    for n, (outcome, per_bin) in enumerate(sorted(counts.items(), key=lambda pair: pair[0] != "sold")):
        bins = range(min(per_bin), max(per_bin) + 1)
        axes.plot([b * width for b in bins], [per_bin[b] / width for b in bins], label=outcome.replace("_", " "),
                  **_styled(axes, n))
    axes.set_xlabel(f"seconds from the release (in steps of {width:g} s)")
    axes.set_ylabel("purchases, checkouts, draw outcomes a second")
    if counts:
        axes.legend(fontsize=7)
    return _svg(figure, "Sales and refusals per second, by reason")


def step_latencies(log: Log, release_at: float) -> str:
    import numpy

    pyplot = _pyplot()
    figure, all_axes = pyplot.subplots(1, len(STEPS), sharey=False, figsize=(11, 3.2))
    width = _bin_s(log, release_at)
    for axes, step in zip(all_axes, STEPS):
        per_bin = defaultdict(list)
        for row in log.rows:
            if row.kind == "request" and row.step == step and row.latency_ms is not None:
                per_bin[int((row.at - release_at) // width)].append(row.latency_ms)
        bins = sorted(per_bin)
        for n, (name, q) in enumerate((("p50", 50), ("p99", 99))):
            axes.plot([b * width for b in bins], [numpy.percentile(per_bin[b], q) for b in bins], label=name,
                      **_styled(axes, n))
        axes.set_title(step)
        axes.set_xlabel("s from release")
        if bins:
            axes.legend(fontsize=7)
    all_axes[0].set_ylabel("ms")
    return _svg(figure, "Each step's p50 and p99 over time: page, join, add, checkout, purchase")


def push_spread(log: Log, release_at: float) -> str:
    import numpy

    pyplot = _pyplot()
    figure, axes = pyplot.subplots()
    release = sorted((row.at - release_at) * 1000 for row in log.rows if row.kind == "push" and row.step == "released")
    out_pushes = defaultdict(list)
    for row in log.rows:
        if row.kind == "push" and row.step == "stock_change" and row.level == "out":
            out_pushes[row.item_id].append(row.at)
    sold_out = sorted((at - min(times)) * 1000 for times in out_pushes.values() for at in times)
    for n, (name, values) in enumerate((("release push, from the release time", release),
                                        ("sold-out pushes, from the first socket told", sold_out))):
        if values:
            axes.plot(values, numpy.arange(1, len(values) + 1) / len(values), label=f"{name} ({len(values)})",
                      drawstyle="steps-post", **_styled(axes, n))
    axes.set_xlabel("ms")
    axes.set_ylabel("share of sockets told")
    if release or sold_out:
        axes.legend(fontsize=7)
    return _svg(figure, "The spread of the release push and of the sold-out pushes across sockets")


def queue_over_time(log: Log, release_at: float) -> str:
    """Shoppers waiting (in the pre-queue or in line, as their last word said) and shoppers let in a
    second, over time."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots()
    width = _bin_s(log, release_at)
    places = sorted((row for row in log.rows if row.step == "place" and row.kind in ("push", "state")),
                    key=lambda row: row.at)
    waiting_now: set[int] = set()
    let_in: set[int] = set()
    waiting, admissions = {}, Counter()
    for row in places:
        b = int((row.at - release_at) // width)
        if row.outcome in ("pre_queue", "queue") and row.level != "sold_out":
            waiting_now.add(row.shopper)
        else:
            waiting_now.discard(row.shopper)
        if row.outcome == "admitted" and row.shopper not in let_in:
            let_in.add(row.shopper)
            admissions[b] += 1
        waiting[b] = len(waiting_now)
    if waiting:
        bins = range(min(waiting), max(waiting) + 1)
        shown, last = [], 0
        for b in bins:
            last = waiting.get(b, last)
            shown.append(last)
        axes.step([b * width for b in bins], shown, where="post", label="waiting (pre-queue and line)", **_styled(axes, 0))
        axes.plot([b * width for b in bins], [admissions[b] / width for b in bins], label="let in a second",
                  **_styled(axes, 1))
        axes.legend(fontsize=7)
    axes.set_xlabel(f"seconds from the release (in steps of {width:g} s)")
    axes.set_ylabel("shoppers")
    return _svg(figure, "The queue: shoppers waiting, and shoppers let in a second")


def has_a_queue(log: Log) -> bool:
    return any(row.step == "place" for row in log.rows)


CHARTS = [
    (pairs_left, "Pairs left per size", "Each size's pairs left, from the log's sales and its pairs before the drop."),
    (outcomes_per_second, "Sales and refusals per second",
     "Purchases and checkouts answered a second, by outcome (sold, or the reason for a refusal), counted over "
     "steps of a second (a quarter of one for a drop over within 20 seconds)."),
    (step_latencies, "Each step's latency over time",
     "For each step a shopper takes, the median and the 99th percentile of its answers within each step of time."),
    (push_spread, "How fast pushes reached every socket",
     "The share of sockets that had the release push by each moment after the release time, and the share that "
     "had each sold-out push by each moment after the first socket had it (a cumulative distribution)."),
    (queue_over_time, "The queue's length and admissions",
     "A queued drop's shoppers still waiting (in the pre-queue before the release, in line after it, as the last "
     "word each had from the store said), and how many were let in each second."),
]
SHOWN_WHEN = {queue_over_time: has_a_queue}  # (a chart drawn only for a drop that has what it shows)


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return html.escape(f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))


def _counts(counts: dict) -> str:
    """Counts by reason, as escaped text ("none" for none): the reasons are the store's words."""
    return html.escape(", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in sorted(counts.items())) or "none")


def _visit_rows(report: dict) -> list[tuple[str, object]]:
    """How the visits went besides buying, and how late the shoppers came."""
    visits = report.get("visits", {})
    rows = [("pages, sockets and joins refused", _counts(visits.get("refused", {}))),
            ("visits that ended without buying (left, gave up, an error)", _counts(visits.get("ended", {}))),
            ("sockets the store closed", visits.get("sockets_closed_by_the_store"))]
    if arrivals := report.get("arrivals"):  # (a log written before arrivals were noted has none)
        rows.append(("shoppers behind their plan on arrival, p50 / p99 / max ms (the load generator's own lag)",
                     f"{_number(arrivals.get('late_p50_ms'))} / {_number(arrivals.get('late_p99_ms'))} / "
                     f"{_number(arrivals.get('late_max_ms'))}"))
    return rows


def _figures_table(report: dict) -> str:
    shown = [("shoppers' purchases and checkouts", report.get("attempts")), ("pairs sold", report.get("sold")),
             ("refused, by reason", _counts(report.get("refusals", {}))),
             ("errors", report.get("errors")), ("asked again after a 503 or 429", report.get("retries")),
             ("selling time (s)", report.get("selling_seconds")), ("pairs a second", report.get("pairs_per_second"))]
    push = report.get("release_push", {})
    shown.append(("release push: sockets told, missed, p50 / p99 ms from the release time",
                  f"{_number(push.get('sockets'))}, {_number(push.get('missed'))}, {_number(push.get('p50_ms'))} / "
                  f"{_number(push.get('p99_ms'))}"))
    out = report.get("sold_out_pushes", {})
    shown.append(("sold-out pushes: sizes, pushes, missed",
                  f"{_number(out.get('sizes_sold_out'))}, {_number(out.get('pushes'))}, {_number(out.get('missed'))}"))
    shown += _visit_rows(report)
    if (queue := report.get("queue")) is not None:
        shown += [("queue: places (taken before the release), let in, told sold out in line, never told",
                   f"{_number(queue['places'])} ({_number(queue['pre_queued'])}), {_number(queue['admitted'])}, "
                   f"{_number(queue['told_sold_out'])}, {_number(queue['untold'])}"),
                  ("queue: release to each pre-queued shopper's first position, p50 / p99 ms",
                   f"{_number(queue['first_position_p50_ms'])} / {_number(queue['first_position_p99_ms'])}"),
                  ("queue: longest wait for a new position in line, p99 / max ms",
                   f"{_number(queue['position_gap_p99_ms'])} / {_number(queue['position_gap_max_ms'])}"),
                  ("queue: the sold-out word's spread over the shoppers in line, p99 ms",
                   _number(queue['sold_out_told_p99_ms']))]
    if (draw := report.get("draw")) is not None:
        shown += [("draw: entries, refused by reason, never told", f"{_number(draw['entries'])}, "
                   f"{_counts(draw['refused'])}, {_number(draw['never_told'])}"),
                  ("draw: outcomes the entrants were told (sold: a pair bought for them)", _counts(draw["outcomes"])),
                  ("draw: release (the close) to each page showing its outcome, p50 / p99 / last ms",
                   f"{_number(draw['told_p50_ms'])} / {_number(draw['told_p99_ms'])} / {_number(draw['told_last_ms'])}")]
    shown.append(("CPU-s the shoppers' actors spent", report.get("shoppers_cpu_s")))
    for address, m in sorted(report.get("machines", {}).items()):
        if m.get("busy_share") is not None:
            shown.append((f"machine {address}: cores, seconds; busy, the shoppers' share, the store's and the rest's",
                          f"{_number(m['cores'])}, {_number(m['seconds'])}; {m['busy_share']:.0%}, "
                          f"{m['shoppers_share']:.0%}, {m['rest_share']:.0%}"))
    for node, figures in sorted(report.get("channel_replicas", {}).items()):
        shown.append((f"channel replica on node {node[:12]}: most sockets, longest loop stall and full collection, "
                       "the freezer's collection once the drop was over (ms)",
                      f"{_number(figures['sockets_most'])}, {_number(figures['loop_stall_ms'])}, "
                      f"{_number(figures['full_collection_ms'])}, {_number(figures.get('planned_pause_ms', 0))}"))
    rows = "".join(f"<tr><th scope='row'>{html.escape(name)}</th><td>{value if isinstance(value, str) else _number(value)}"
                   f"</td></tr>" for name, value in shown)
    steps = "".join(f"<tr><th scope='row'>{html.escape(step)}</th><td>{_number(f['count'])}</td>"
                    f"<td>{_number(f['p50_ms'])}</td><td>{_number(f['p99_ms'])}</td></tr>"
                    for step, f in report.get("steps", {}).items())
    return (f"<table><caption>Figures</caption>{rows}</table>"
            f"<table><caption>Each step's answers</caption><tr><th scope='col'>step</th><th scope='col'>count</th>"
            f"<th scope='col'>p50 ms</th><th scope='col'>p99 ms</th></tr>{steps}</table>")


def _invariants(report: dict) -> str:
    items = "".join(
        f"<li><strong>{'holds' if i['holds'] else 'FAILED'}</strong>: {html.escape(i['name'])}"
        f"{(' (' + html.escape(i['detail']) + ')') if i['detail'] else ''}</li>" for i in report.get("invariants", []))
    return f"<h2>Invariants, checked against the database</h2><ul>{items}</ul>"


def render(log: Log) -> str:
    """The whole report, as HTML with its charts inline."""
    facts = log.facts
    release_at = facts["release_at"]
    report = facts.get("report", {})
    scenario = facts.get("scenario", {})
    charts = "".join(
        f"<figure><h2>{html.escape(title)}</h2>{chart(log, release_at)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        for chart, title, caption in CHARTS if SHOWN_WHEN.get(chart, lambda _log: True)(log))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drop rehearsal: product {facts['product']}</title>
<style>body{{font-family:sans-serif;max-width:72rem;margin:1rem auto;padding:0 1rem;color:#111}}
figure{{margin:1.5rem 0}} svg{{max-width:100%;height:auto}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.15rem .6rem;border-bottom:1px solid #ccc}} pre{{background:#f4f4f4;padding:.5rem}}</style>
</head><body><main>
<h1>Drop rehearsal: product {facts['product']}, {html.escape(str(scenario.get('mode', '')))}, {scenario.get('shoppers', '?')} shoppers</h1>
<p>{len(log.rows):,} events from {len(set(log.nodes))} node(s). Released at {html.escape(facts.get('release_time', ''))}.
{'Every invariant holds.' if report.get('ok') else 'An invariant FAILED: see below.'}</p>
{_figures_table(report)}
{_invariants(report)}
{charts}
<h2>The scenario</h2><pre>{html.escape(json.dumps(scenario, indent=2))}</pre>
</main></body></html>
"""


def counts(rows: list[Row]) -> dict:
    """What the log says was sold (by item), asked and pushed: the figures the report's JSON must agree with."""
    sold = Counter(row.item_id for row in rows if row.kind == "request" and row.outcome == "sold")
    return {"sold": sum(sold.values()), "sold_per_item": dict(sold),
            "purchases": sum(row.kind == "request" and row.step == "purchase" for row in rows),
            "checkouts": sum(row.kind == "request" and row.step == "checkout" for row in rows),
            "draw_outcomes": sum(row.kind == "request" and row.step == "draw" for row in rows),
            "pushes": sum(row.kind == "push" for row in rows)}
