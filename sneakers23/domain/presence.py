"""Presence: who is shopping right now, tab by tab, across the cluster (book chapter 10).

Every open shopper tab is an entry `{tab, shopper, page, node, items, online_at}`. The channel
replica that holds the tab's socket is its *source*: it sends what changed among its tabs (joins,
updates, leaves) as numbered reports, and the whole of its tabs when it (re)registers. The board
(one per cluster, in the presence actor) keeps every source's tabs and turns each report into a
Phoenix Presence diff (`{joins, leaves}`, keyed by shopper, `{metas: [...]}` each), so that the
official client's `Presence` class follows it unchanged. A tab whose entry changes leaves with its
old `phx_ref` and joins with a new one, as Phoenix does.

Tabs leave when their source says so, and all at once when the source falls silent (its node died)
for longer than the timeout. A source the board does not know, or whose reports skipped a number, is
asked for its whole state: what was lost is healed by the next report, not by a reload.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

SOURCE_TIMEOUT_S = 5.0  # a source that has not reported for this long is gone, with its tabs
DEFAULT_DIFFS_KEPT = 10_000

Meta = dict[str, Any]  # what a tab's entry says: page, node, items, online_at (and shopper, tab, phx_ref)


@dataclass(frozen=True, slots=True)
class TabJoined:
    """A tab opened, or its entry changed (its cart, its page)."""

    tab: str  # unique across the cluster: the source's id and a number
    shopper: str
    meta: Meta


@dataclass(frozen=True, slots=True)
class TabLeft:
    tab: str


TabDelta = TabJoined | TabLeft


@dataclass(frozen=True, slots=True)
class Report:
    source: str  # a channel replica, one life of it
    node: str
    seq: int  # 1, 2, 3 … per source; a full report may start anywhere
    deltas: tuple[TabDelta, ...] = ()
    full: bool = False  # the deltas are every tab the source holds (joins only)
    sockets: int = 0  # the source's open sockets, for the dashboard


@dataclass(slots=True)
class _Source:
    node: str
    seq: int
    seen_at: float
    sockets: int
    tabs: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Diff:
    joins: dict[str, dict]
    leaves: dict[str, dict]

    def __bool__(self) -> bool:
        return bool(self.joins or self.leaves)

    def as_phoenix(self) -> dict:
        return {"joins": self.joins, "leaves": self.leaves}


@dataclass(frozen=True, slots=True)
class BoardRead:
    """What a follower gets: either the diffs after its cursor, or (reset) the whole state."""

    epoch: str
    cursor: int
    diffs: tuple[Diff, ...] = ()
    state: dict | None = None  # set when the follower must start again from it


class PresenceBoard:
    def __init__(self, epoch: str, timeout_s: float = SOURCE_TIMEOUT_S, diffs_kept: int = DEFAULT_DIFFS_KEPT):
        self.epoch = epoch
        self._timeout_s = timeout_s
        self._tabs: dict[str, tuple[str, Meta, str]] = {}  # tab -> (shopper, meta with phx_ref, source)
        self._sources: dict[str, _Source] = {}
        self._refs = 0
        self._diffs: deque[Diff] = deque(maxlen=diffs_kept)
        self._cursor = 0  # the number of the newest diff

    # --- in: reports from the sources ---

    def report(self, report: Report, now: float) -> bool:
        """Apply a source's report. False when the board needs the source's whole state (it does not
        know the source, or a report was lost): the report is then ignored."""
        source = self._sources.get(report.source)
        if not report.full and (source is None or report.seq != source.seq + 1):
            return False
        if source is None:
            source = self._sources[report.source] = _Source(report.node, report.seq, now, report.sockets)
        source.seq, source.seen_at, source.sockets = report.seq, now, report.sockets
        joins: dict[str, dict] = {}
        leaves: dict[str, dict] = {}
        if report.full:
            named = {delta.tab for delta in report.deltas if isinstance(delta, TabJoined)}
            for tab in source.tabs - named:
                self._leave(tab, leaves)
        for delta in report.deltas:
            if isinstance(delta, TabJoined):
                self._join(delta, report.source, source, joins, leaves)
            elif delta.tab in source.tabs:
                self._leave(delta.tab, leaves)
        self._record(Diff(joins, leaves))
        return True

    def expire(self, now: float) -> list[str]:
        """Let go of the sources silent for longer than the timeout, and of their tabs; their ids."""
        gone = [name for name, source in self._sources.items() if now - source.seen_at > self._timeout_s]
        leaves: dict[str, dict] = {}
        for name in gone:
            for tab in list(self._sources[name].tabs):
                self._leave(tab, leaves)
            del self._sources[name]
        self._record(Diff({}, leaves))
        return gone

    def _join(self, delta: TabJoined, source_name: str, source: _Source, joins: dict, leaves: dict) -> None:
        held = self._tabs.get(delta.tab)
        meta = {**delta.meta, "tab": delta.tab, "shopper": delta.shopper}
        if held is not None:
            shopper, old, _source = held
            if {k: v for k, v in old.items() if k != "phx_ref"} == meta and shopper == delta.shopper:
                return  # (a full report repeats what is known)
            self._leave(delta.tab, leaves)
        self._refs += 1
        meta["phx_ref"] = f"{self.epoch[:8]}.{self._refs}"
        self._tabs[delta.tab] = (delta.shopper, meta, source_name)
        source.tabs.add(delta.tab)
        joins.setdefault(delta.shopper, {"metas": []})["metas"].append(meta)

    def _leave(self, tab: str, leaves: dict) -> None:
        held = self._tabs.pop(tab, None)
        if held is None:
            return
        shopper, meta, source_name = held
        source = self._sources.get(source_name)
        if source is not None:
            source.tabs.discard(tab)
        leaves.setdefault(shopper, {"metas": []})["metas"].append(meta)

    def _record(self, diff: Diff) -> None:
        if diff:
            self._diffs.append(diff)
            self._cursor += 1

    # --- out: followers (the admin dashboards) ---

    @property
    def cursor(self) -> int:
        return self._cursor

    def state(self) -> dict:
        """Every tab, as Phoenix's `presence_state`: {shopper: {metas: [...]}}."""
        state: dict[str, dict] = {}
        for shopper, meta, _source in self._tabs.values():
            state.setdefault(shopper, {"metas": []})["metas"].append(meta)
        return state

    def read(self, epoch: str, cursor: int) -> BoardRead:
        oldest = self._cursor - len(self._diffs)
        if epoch != self.epoch or not oldest <= cursor <= self._cursor:
            return BoardRead(self.epoch, self._cursor, state=self.state())
        diffs = tuple(self._diffs[i] for i in range(cursor - oldest, len(self._diffs)))
        return BoardRead(self.epoch, self._cursor, diffs)

    # --- counts ---

    @property
    def tabs(self) -> int:
        return len(self._tabs)

    @property
    def shoppers(self) -> int:
        return len({shopper for shopper, _meta, _source in self._tabs.values()})

    def nodes(self, now: float) -> dict[str, dict]:
        """Per node: its open sockets, its tracked tabs and shoppers, and how long ago it reported."""
        nodes: dict[str, dict] = {}
        for source in self._sources.values():
            node = nodes.setdefault(source.node, {"sockets": 0, "tabs": 0, "shoppers": set(), "seen_s": None})
            node["sockets"] += source.sockets
            node["tabs"] += len(source.tabs)
            node["shoppers"].update(self._tabs[tab][0] for tab in source.tabs)
            ago = round(now - source.seen_at, 3)
            node["seen_s"] = ago if node["seen_s"] is None else min(node["seen_s"], ago)
        for node in nodes.values():
            node["shoppers"] = len(node["shoppers"])
        return nodes


def apply_diff(state: dict, diff: Diff) -> None:
    """Apply a diff to a `presence_state`-shaped mirror, as the Phoenix client's syncDiff does."""
    for shopper, entry in diff.joins.items():
        metas = state.setdefault(shopper, {"metas": []})["metas"]
        refs = {meta["phx_ref"] for meta in metas}
        metas.extend(meta for meta in entry["metas"] if meta["phx_ref"] not in refs)
    for shopper, entry in diff.leaves.items():
        held = state.get(shopper)
        if held is None:
            continue
        gone = {meta["phx_ref"] for meta in entry["metas"]}
        held["metas"] = [meta for meta in held["metas"] if meta["phx_ref"] not in gone]
        if not held["metas"]:
            del state[shopper]
