"""A drop's report, and the invariant check against the database that proves nothing was oversold."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field

from sneakers23.inventory import StockAudit


@dataclass
class Attempt:
    item_id: int
    outcome: str  # "sold", a refusal reason, or "error"
    latency_ms: float
    finished_at: float = 0.0  # wall clock (time.time()), to tell what came after the last sale
    retries: int = 0  # asked again after the store was unavailable (503, or an answer lost)


@dataclass
class Invariant:
    name: str
    holds: bool
    detail: str = ""


@dataclass
class DropReport:
    kind: str
    attempts: int
    sold: int
    refusals: dict[str, int]
    errors: int
    retries: int  # purchases asked again, with the same idempotency key, after a 503 or a lost answer
    seconds: float
    selling_seconds: float  # from the start to the last pair sold
    pairs_per_second: float  # while there was stock
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    refusal_latency_p99_ms: float | None
    sold_out_refusal_latency_p99_ms: float | None  # refusals asked for after the last pair was sold
    invariants: list[Invariant] = field(default_factory=list)
    transactions: int | None = None  # write transactions committed by the sales actors (None: not through them)

    @property
    def transactions_per_pair(self) -> float | None:
        return None if self.transactions is None or not self.sold else self.transactions / self.sold

    @property
    def ok(self) -> bool:
        return all(invariant.holds for invariant in self.invariants)

    def to_dict(self) -> dict:
        return {**asdict(self), "transactions_per_pair": self.transactions_per_pair, "ok": self.ok}

    def table(self) -> str:
        def ms(value):
            return "-" if value is None else f"{value:.1f} ms"

        lines = [
            f"{self.kind}: {self.attempts} attempts in {self.seconds:.1f}s",
            f"  pairs sold          {self.sold} in {self.selling_seconds:.1f}s ({self.pairs_per_second:.0f}/s)",
            *(f"  refused {reason:<12}{count}" for reason, count in sorted(self.refusals.items())),
            f"  errors              {self.errors}",
            f"  retried after 503   {self.retries}",
            *([f"  transactions        {self.transactions} ({self.transactions_per_pair or 0:.3f} per pair sold)"]
              if self.transactions is not None else []),
            f"  latency p50 / p99   {ms(self.latency_p50_ms)} / {ms(self.latency_p99_ms)}",
            f"  refusal p99         {ms(self.refusal_latency_p99_ms)} "
            f"(once sold out: {ms(self.sold_out_refusal_latency_p99_ms)})",
            "invariants (checked against the database):",
            *(f"  [{'ok' if i.holds else 'FAILED'}] {i.name}{': ' + i.detail if i.detail else ''}"
              for i in self.invariants),
        ]
        return "\n".join(lines)


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0 < p < 100), interpolated between the values around it."""
    if len(values) < 2:
        return values[0] if values else None
    cut = min(max(round(p * 10), 1), 999)  # the cut points are at 0.1 %, 0.2 %, … 99.9 %
    return statistics.quantiles(values, n=1000, method="inclusive")[cut - 1]


def build_report(kind: str, attempts: list[Attempt], started_at: float, seconds: float, before: StockAudit,
                 after: StockAudit, max_pairs_per_product: int) -> DropReport:
    outcomes = Counter(a.outcome for a in attempts)
    sold = outcomes.pop("sold", 0)
    errors = outcomes.pop("error", 0)
    last_sale = max((a.finished_at for a in attempts if a.outcome == "sold"), default=started_at)
    selling = max(last_sale - started_at, 1e-6)
    refusal_latencies = [a.latency_ms for a in attempts if a.outcome not in ("sold", "error")]
    report = DropReport(
        kind=kind, attempts=len(attempts), sold=sold, refusals=dict(outcomes), errors=errors,
        retries=sum(a.retries for a in attempts), seconds=seconds,
        selling_seconds=selling if sold else 0.0, pairs_per_second=sold / selling if sold else 0.0,
        latency_p50_ms=statistics.median([a.latency_ms for a in attempts]) if attempts else None,
        latency_p99_ms=percentile([a.latency_ms for a in attempts], 99),
        refusal_latency_p99_ms=percentile(refusal_latencies, 99),
        sold_out_refusal_latency_p99_ms=percentile(
            [a.latency_ms for a in attempts if a.outcome == "sold_out" and a.finished_at - a.latency_ms / 1000 > last_sale],
            99),
    )
    report.invariants = check_invariants(attempts, before, after, max_pairs_per_product)
    return report


def check_invariants(attempts: list[Attempt], before: StockAudit, after: StockAudit,
                     max_pairs_per_product: int) -> list[Invariant]:
    sold_per_item = Counter(a.item_id for a in attempts if a.outcome == "sold")
    mismatched = []
    for item_id in sorted(before.counts):
        by_count = before.counts[item_id] - after.counts[item_id]
        by_orders = after.orders[item_id] - before.orders[item_id]
        if not sold_per_item[item_id] == by_count == by_orders:
            mismatched.append(f"item {item_id}: sold {sold_per_item[item_id]}, count fell {by_count}, "
                              f"orders grew {by_orders}")
    negative = [item_id for item_id, count in after.counts.items() if count < 0]
    return [
        Invariant("pairs sold = count before - count after = orders written, for every item",
                  not mismatched, "; ".join(mismatched[:5])),
        Invariant("no count below 0", not negative, f"items {negative}" if negative else ""),
        Invariant(f"no shopper over the limits (1 pair per size, {max_pairs_per_product} per product)",
                  after.most_pairs_per_size <= 1 and after.most_pairs_per_product <= max_pairs_per_product,
                  f"most per size {after.most_pairs_per_size}, most per product {after.most_pairs_per_product}"),
    ]
