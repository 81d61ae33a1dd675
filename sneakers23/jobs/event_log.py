"""A rehearsal's event log: one row per request a shopper made and per push it received, with the
time, written as Parquet (pyarrow) for pandas, Polars or DuckDB. What the charts need besides the
rows (the scenario, the release time, each size's pairs before) travels in the file's metadata, so
that `sneakers23 drop report FILE.parquet` draws the report again from the file alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from sneakers23.errors import Sneakers23Error

META_KEY = b"sneakers23.rehearsal"
LATER_COLUMNS = ("position",)  # (a log written before they were has none: read as empty)


class Row(NamedTuple):
    shopper: int
    kind: str  # "request" (a page, a join, an add, a checkout, a purchase), "push", "state" (a size out at
    # a join, a queue's place in its join's answer), "work" (a proof of work solved), or "visit" (a shopper
    # arrived, its latency its lag behind its plan; a socket closed, a shopper left or gave up)
    step: str  # the request's step, the push's event, or the visit's end
    at: float  # when it was answered, received or happened (seconds since the epoch)
    latency_ms: float | None  # a request's, from sent to answered
    outcome: str  # "ok", "sold", a refusal's reason, "received", …
    item_id: int | None
    level: str | None  # a stock change's
    retries: int = 0  # a request's: asked again after a 429 or a 503 (or a lost answer), with the same key
    position: int | None = None  # a queued drop's place (kind "push" or "state", step "place"): its position


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("shopper", pa.int32()), ("kind", pa.dictionary(pa.int8(), pa.string())),
        ("step", pa.dictionary(pa.int8(), pa.string())), ("at", pa.timestamp("us", tz="UTC")),
        ("latency_ms", pa.float64()), ("outcome", pa.dictionary(pa.int16(), pa.string())),
        ("item_id", pa.int64()), ("level", pa.dictionary(pa.int8(), pa.string())), ("retries", pa.int16()),
        ("position", pa.int32()), ("node", pa.string()),
    ])


def write(path: Path, rows: list[tuple], nodes: list[str], facts: dict) -> None:
    """The rows (each with its node) as Parquet, with the rehearsal's facts (JSON) in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [Row(*row) for row in rows]
    columns = list(zip(*rows)) if rows else [[] for _ in Row._fields]
    data = {name: list(values) for name, values in zip(Row._fields, columns)}
    data["at"] = [round(at * 1_000_000) for at in data["at"]]
    data["node"] = nodes
    table = pa.table(data, schema=_schema().with_metadata({META_KEY: json.dumps(facts).encode()}))
    pq.write_table(table, path, compression="zstd")


class Log(NamedTuple):
    rows: list[Row]
    nodes: list[str]
    facts: dict


def read(path: Path) -> Log:
    """A log written by `write`. Raises Sneakers23Error for a file that is not one."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError):
        raise Sneakers23Error(f"{path}: not a Parquet file (a rehearsal's event log is one)") from None
    metadata = table.schema.metadata or {}
    if META_KEY not in metadata or {*Row._fields, "node"} - set(table.column_names) - set(LATER_COLUMNS):
        raise Sneakers23Error(f"{path}: not a rehearsal's event log (written by `sneakers23 drop rehearse`)")
    columns = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
               for name in Row._fields}
    columns["at"] = [at.timestamp() for at in columns["at"]]
    return Log([Row(*values) for values in zip(*(columns[name] for name in Row._fields))],
               table.column("node").to_pylist(), json.loads(metadata[META_KEY]))
