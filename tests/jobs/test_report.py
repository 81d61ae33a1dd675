"""The drop report's percentiles (the standard library's, interpolated)."""

from __future__ import annotations

from sneakers23.jobs.report import percentile


def test_percentiles_of_a_known_series():
    values = list(range(1, 101))  # 1 … 100
    assert percentile(values, 50) == 50.5
    assert 99 <= percentile(values, 99) <= 100
    assert 99.9 < percentile(values, 99.99) <= 100 and 1 <= percentile(values, 0.01) < 1.1, "the ends are clamped"
    assert percentile([7.0], 99) == 7.0 and percentile([], 99) is None
