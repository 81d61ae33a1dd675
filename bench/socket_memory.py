"""What an open socket costs the channel replica that holds it: its resident memory before and after
N sockets join a product (each a Phoenix socket, held by the fan-out benchmark's load generators),
and the CPU the replica spends on their heartbeats meanwhile (docs/capacity.md).

    .venv/bin/python -m bench.socket_memory [--sockets 5000] [--mode direct]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.channel_fanout import CLIENT_PROCESSES, open_sockets
from bench.servers import seeded_shop, MODES, socket_url, start_store
from harness.ports import free_port

SETTLE_S = 10.0  # (a polling interval: the replica's memory read again until it stops growing)


def replica_pid() -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"ServeReplica:channels" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    raise SystemExit("no channel replica found")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_rss(pid: int) -> float:
    """The replica's memory once two reads a polling interval apart agree within 1 MiB."""
    last = rss_mib(pid)
    for _ in range(12):
        time.sleep(SETTLE_S)
        now = rss_mib(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--mode", default="direct", choices=sorted(MODES))
    args = parser.parse_args()
    workdir, database_url, inventory = seeded_shop("s23sockets-")
    port = free_port()
    store = start_store(args.mode, database_url, port)
    generators = []
    try:
        pid = replica_pid()
        before = settled_rss(pid)
        generators, opened = open_sockets(socket_url(args.mode, port), args.sockets, "product:1")
        after = settled_rss(pid)
        cpu_before, started = cpu_s(pid), time.monotonic()
        time.sleep(60)  # (a minute of heartbeats: two for each socket)
        busy = (cpu_s(pid) - cpu_before) / (time.monotonic() - started)
    finally:
        for generator in generators:
            generator.stop()
        store.stop()
    print(f"{opened:,} sockets joined product 1 ({CLIENT_PROCESSES} load generators, mode {args.mode})")
    print(f"channel replica resident memory: {before:.0f} MiB before, {after:.0f} MiB after: "
          f"{(after - before) * 1024 / max(opened, 1):.1f} KiB a socket")
    print(f"its CPU while they sit and send heartbeats: {busy:.3f} of a core")


if __name__ == "__main__":
    main()
