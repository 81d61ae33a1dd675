"""The benchmarks still import: a benchmark is run by hand, so a broken import would otherwise wait
for the next person who measures."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

SERVERS_RUN_AS_PROGRAMS = {"bare_page", "bare_serve_page"}  # (they read their argv and environment)
MODULES = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "bench").glob("*.py")
                 if path.stem != "__init__" and path.stem not in SERVERS_RUN_AS_PROGRAMS)


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_imports(module):
    importlib.import_module(f"bench.{module}")
