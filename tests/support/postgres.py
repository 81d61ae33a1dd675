"""A throwaway PostgreSQL server for the test session, from the machine's server binaries."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port


def find_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian keeps them off PATH)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class ThrowawayPostgres:
    datadir: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the postmaster by its process id (fast shutdown), then remove its files."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.05)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our own exited child) still answers signal 0.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def start(bindir: Path) -> ThrowawayPostgres:
    """initdb + start on a free loopback port; as root, the server runs as the `postgres` user."""
    base = Path(tempfile.mkdtemp(prefix="sneakers23-pg-"))
    datadir = base / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*as_user, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")

    run(str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=300 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a throwaway: speed over durability
    )
    run(str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options, "-l", str(base / "server.log"), "-w", "start")
    pid = int((datadir / "postmaster.pid").read_text().splitlines()[0])
    return ThrowawayPostgres(datadir=datadir, port=port, pid=pid)
