"""Catalog page throughput: the store on Ray Serve (each request path) versus bare uvicorn + Starlette
serving the same bytes, with the same load generator (wrk), in one run.

    .venv/bin/python bench/page_throughput.py [--seconds 10] [--connections 50] [--modes proxy,haproxy]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from bench.servers import MODES, start_bare_page, start_bare_serve_page, start_store
from harness.ports import free_port
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed requests")
    return rps, float(p99.group(1)) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="s23page-"))
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    inventory = Inventory(Settings(database_url=database_url))
    inventory.upgrade_schema()
    inventory.seed(random_seed=23)
    inventory.release(1)

    results = {}
    page_file = workdir / "page.html"
    for mode in args.modes.split(","):
        port = free_port()
        store = start_store(mode, database_url, port)
        try:
            page_file.write_bytes(httpx.get(f"http://127.0.0.1:{port}/").content)
            wrk(f"http://127.0.0.1:{port}/", 2, args.connections)  # warm up
            results[f"store, {mode}"] = wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections)
        finally:
            store.stop()
    for mode in args.modes.split(","):  # what Serve itself reaches on the same path, same bytes
        port = free_port()
        bare_serve = start_bare_serve_page(mode, page_file, port)
        try:
            wrk(f"http://127.0.0.1:{port}/", 2, args.connections)
            results[f"bare Serve app, {mode}"] = wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections)
        finally:
            bare_serve.stop()
    port = free_port()
    bare = start_bare_page(page_file, port)
    try:
        wrk(f"http://127.0.0.1:{port}/", 2, args.connections)
        baseline = results["bare uvicorn + Starlette"] = wrk(f"http://127.0.0.1:{port}/", args.seconds,
                                                              args.connections)
    finally:
        bare.stop()

    print(f"GET / ({page_file.stat().st_size} bytes), wrk -t2 -c{args.connections} -d{args.seconds}s")
    print(f"{'':40}{'req/s':>9}{'p99 ms':>9}{'x baseline':>12}")
    for name, (rps, p99) in results.items():
        print(f"{name:40}{rps:9.0f}{p99:9.1f}{rps / baseline[0]:12.2f}")


if __name__ == "__main__":
    main()
