"""A scheduled drop's first purchase, beside the next one (its baseline, in the same run): the store
as `sneakers23 serve` runs it (one node, SQLite), product 2 open to guests and scheduled in 25 s; at
its release one shopper buys at once, then another. A product's sales actor (a Ray worker, its
ledger loaded from the database) starts either ahead, by the release clock, or at its product's
first purchase, which then waits for it (issue 26). Each round is a store of its own.

    .venv/bin/python -m bench.first_purchase [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import BIN, start_store
from harness.ports import free_port
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in

RELEASE_IN_S = 25


def _sneakers23(env: dict, *args: str) -> None:
    done = subprocess.run([str(BIN / "sneakers23"), *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"bench: sneakers23 {' '.join(args)} failed: {done.stderr.strip()[-300:]}")


def _shopper(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    token = form_token_in(client.get("/").text)
    if token is None:
        raise SystemExit("bench: the store's page carries no form token")
    client.headers[FORM_TOKEN_HEADER] = token
    return client


def one_drop(directory: Path) -> tuple[float, float]:
    """(the first purchase's time, the next one's), in ms."""
    port = free_port()
    store = start_store("haproxy+throughput", f"sqlite:///{directory / 'sneakers23.db'}", port)
    try:
        _sneakers23(store.env, "sign-in", "2", "--not-required")
        _sneakers23(store.env, "release", "2", "--in", f"{RELEASE_IN_S}s")
        url = f"http://127.0.0.1:{port}"
        first, second = _shopper(url), _shopper(url)
        sizes = [item["id"] for item in first.get("/api/products").json()[1]["items"] if item["level"] != "out"]
        deadline = time.monotonic() + RELEASE_IN_S + 30
        while not first.get("/api/products").json()[1]["released"]:
            if time.monotonic() > deadline:
                raise SystemExit("bench: product 2 was not released on time")
            time.sleep(0.02)
        took = []
        for shopper, size in ((first, sizes[0]), (second, sizes[1])):
            started = time.perf_counter()
            bought = shopper.post(f"/api/items/{size}/purchase")
            took.append((time.perf_counter() - started) * 1000)
            if bought.status_code != 200:
                raise SystemExit(f"bench: a purchase was answered {bought.status_code}: {bought.text[:200]}")
        return took[0], took[1]
    finally:
        store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="s23first-") as directory:
            rounds.append(one_drop(Path(directory)))
        print(f"round {n + 1}: first purchase {rounds[-1][0]:.0f} ms, the next {rounds[-1][1]:.0f} ms", file=sys.stderr)
    first, second = [r[0] for r in rounds], [r[1] for r in rounds]
    print(json.dumps({"first_ms": [round(x) for x in first], "next_ms": [round(x) for x in second],
                      "first_x_next": round(statistics.median(first) / statistics.median(second), 1)}, indent=2))


if __name__ == "__main__":
    main()
