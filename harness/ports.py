"""Free ports on the loopback, for the servers the tests and benchmarks start.

A port is taken from a range below the kernel's ephemeral ports (where Ray and every `bind(0)`
get theirs, 32768 and up here) and above Ray's worker ports (10002-19999), one range of its own
for each test worker (pytest-xdist's PYTEST_XDIST_WORKER) and one for everything else: a port handed
out here is not handed out again by this process, nor by another worker, nor given by the kernel
to someone else meanwhile.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

LOWEST, HIGHEST = 20_000, 32_000
RANGES = 4  # gw0, gw1, gw2, and the last for a process outside pytest-xdist (a benchmark, a serial run)


def _range() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    index = RANGES - 1 if worker is None else int(worker.removeprefix("gw"))
    if worker is not None and index >= RANGES - 1:
        raise RuntimeError(f"{worker}: harness/ports.py has port ranges for {RANGES - 1} test workers")
    size = (HIGHEST - LOWEST) // RANGES
    return range(LOWEST + index * size, LOWEST + (index + 1) * size)


_ours = _range()
_next = itertools.cycle(itertools.chain(range(start := random.choice(_ours), _ours.stop), range(_ours.start, start)))


def free_port() -> int:
    for _ in range(len(_ours)):
        port = next(_next)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # (held by someone, or by a server of an earlier test still closing)
            return port
    raise RuntimeError(f"no free port in {_ours.start}-{_ours.stop - 1}")
