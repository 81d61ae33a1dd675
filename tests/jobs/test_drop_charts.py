"""A rehearsal's event log and its HTML report, from a small log made here: the Parquet file keeps
every row and the facts, the report draws its four charts from it alone, and `sneakers23 drop
report` draws it again (or refuses a file that is not a log, in one line)."""

from __future__ import annotations

import html
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sneakers23.errors import Sneakers23Error
from sneakers23.jobs import drop_charts, event_log
from sneakers23.jobs.event_log import Row

RELEASE_AT = 1_800_000_000.0


def small_drop() -> tuple[list[tuple], list[str], dict]:
    """Three shoppers and one size of two pairs: two buy it (one through the cart), the third is
    refused; each socket has the release push and the sold-out push."""
    rows = []
    for shopper in range(3):
        rows += [(shopper, "request", "page", RELEASE_AT - 5 + shopper, 4.0, "ok", None, None),
                 (shopper, "request", "join", RELEASE_AT - 5 + shopper, 1.5, "ok", None, None),
                 (shopper, "push", "released", RELEASE_AT + 0.05 + shopper / 100, None, "received", None, None)]
    rows += [(0, "request", "purchase", RELEASE_AT + 0.2, 20.0, "sold", 14, None),
             (1, "request", "add", RELEASE_AT + 0.21, 8.0, "ok", 14, None),
             (1, "request", "checkout", RELEASE_AT + 0.3, 30.0, "sold", 14, None),
             (2, "request", "purchase", RELEASE_AT + 0.4, 5.0, "sold_out", 14, None)]
    rows += [(shopper, "push", "stock_change", RELEASE_AT + 0.31 + shopper / 100, None, "received", 14, "out")
             for shopper in range(3)]
    facts = {"product": 2, "scenario": {"mode": "first-come", "shoppers": 3}, "release_at": RELEASE_AT,
             "release_time": "2027-01-15T08:00:00+00:00", "ended_at": RELEASE_AT + 3,
             "sizes": {"14": {"size": "6", "before": 2}},
             "report": {"ok": True, "attempts": 3, "sold": 2, "refusals": {"sold_out": 1},
                        "invariants": [{"name": "no count below 0", "holds": True, "detail": ""}],
                        "steps": {"page": {"count": 3, "p50_ms": 4.0, "p99_ms": 4.0}},
                        "release_push": {"sockets": 3, "missed": 0, "p50_ms": 60.0, "p99_ms": 70.0},
                        "sold_out_pushes": {"sizes_sold_out": 1, "pushes": 3, "missed": 0}}}
    return rows, ["node-a"] * len(rows), facts


def test_the_log_keeps_every_row_and_the_facts(tmp_path):
    rows, nodes, facts = small_drop()
    path = tmp_path / "drop.parquet"
    event_log.write(path, rows, nodes, facts)
    log = event_log.read(path)
    assert log.rows == [Row(*row) for row in rows]  # (retries: 0 where a row leaves it out)
    assert log.nodes == nodes and log.facts == facts
    # An ordinary Parquet file, as pandas, Polars or DuckDB read it: times as UTC timestamps.
    table = pq.read_table(path)
    assert table.num_rows == len(rows) and table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert drop_charts.counts(log.rows) == {"sold": 2, "sold_per_item": {14: 2}, "purchases": 2, "checkouts": 1,
                                            "draw_outcomes": 0, "pushes": 6}


def test_the_report_draws_its_charts_from_the_log_alone(tmp_path):
    rows, nodes, facts = small_drop()
    path = tmp_path / "drop.parquet"
    event_log.write(path, rows, nodes, facts)
    page = drop_charts.render(event_log.read(path))
    charts = [html.unescape(label) for label in re.findall(r'<svg role="img" aria-label="([^"]+)"', page)]
    assert charts == ["Pairs left per size over time", "Sales and refusals per second, by reason",
                      "Each step's p50 and p99 over time: page, join, add, checkout, purchase",
                      "The spread of the release push and of the sold-out pushes across sockets"]
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")  # opens offline
    assert "Every invariant holds." in page and "sold out: 1" in page
    assert "size 6" in page  # the size's line in the first chart's legend
    # The charts are drawn from the rows: the pushes counted in the spread's legend, the outcomes
    # in the sales chart's.
    assert "release push, from the release time (3)" in page
    assert "sold-out pushes, from the first socket told (3)" in page
    assert re.search(r">sold out<", page) and re.search(r">sold<", page)


def test_drop_report_draws_it_again_and_refuses_what_is_not_a_log(tmp_path):
    from sneakers23.cli import cli

    rows, nodes, facts = small_drop()
    path = tmp_path / "drop.parquet"
    event_log.write(path, rows, nodes, facts)
    result = CliRunner().invoke(cli, ["drop", "report", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "drop.html").read_text().count('<svg role="img"') == 4

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    text = tmp_path / "text.parquet"
    text.write_text("product: 2\n")
    for path, said in ((other, "not a rehearsal's event log"), (text, "not a Parquet file")):
        result = CliRunner().invoke(cli, ["drop", "report", str(path)])
        assert result.exit_code == 1 and result.output == f"sneakers23: {path}: {said}" + (
            " (written by `sneakers23 drop rehearse`)\n" if path == other else " (a rehearsal's event log is one)\n")
        with pytest.raises(Sneakers23Error):
            event_log.read(path)


def test_without_the_rehearsal_extra_the_commands_say_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    from sneakers23.cli import cli

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "pyarrow" else found(name, *rest))
    log = tmp_path / "drop.parquet"
    log.write_bytes(b"PAR1")
    for args in (["drop", "report", str(log)], ["drop", "rehearse", str(log)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert result.output == ("sneakers23: drop rehearsals need pyarrow: pip install -e '.[rehearsal]' where the "
                                 "rehearsal runs (./dev installs it)\n")


def test_a_queued_drops_report_adds_the_queues_chart_and_a_log_without_positions_still_reads(tmp_path):
    rows, nodes, facts = small_drop()
    places = [(0, "state", "place", RELEASE_AT - 4, None, "pre_queue", None, None, 0, None),
              (1, "state", "place", RELEASE_AT - 3, None, "pre_queue", None, None, 0, None),
              (0, "push", "place", RELEASE_AT + 0.1, None, "admitted", None, None, 0, None),
              (1, "push", "place", RELEASE_AT + 0.1, None, "queue", None, None, 0, 1),
              (1, "push", "place", RELEASE_AT + 1.1, None, "admitted", None, None, 0, None)]
    path = tmp_path / "queue.parquet"
    event_log.write(path, rows + places, nodes + ["node-a"] * len(places), facts)
    log = event_log.read(path)
    assert [row.position for row in log.rows if row.step == "place"] == [None, None, None, 1, None]
    page = drop_charts.render(log)
    labels = [html.unescape(label) for label in re.findall(r'<svg role="img" aria-label="([^"]+)"', page)]
    assert labels[-1] == "The queue: shoppers waiting, and shoppers let in a second" and len(labels) == 5
    assert "waiting (pre-queue and line)" in page and "let in a second" in page

    # A log written before queues were rehearsed (no position column) reads, every position empty.
    table = pq.read_table(tmp_path / "queue.parquet")
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop(["position"]).replace_schema_metadata(table.schema.metadata), old)
    assert [row.position for row in event_log.read(old).rows] == [None] * len(rows + places)
