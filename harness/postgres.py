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

from harness.ports import free_port
from harness.processes import alive


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
    bindir: Path | None = None
    options: str = ""
    as_user: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the postmaster by its process id (fast shutdown), then remove its files."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and alive(self.pid):
                time.sleep(0.05)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def stop_immediately(self) -> None:
        """What a crash of the database looks like to its clients: an immediate shutdown (SIGQUIT to
        the postmaster, every backend gone at once, recovery from the log at the next start)."""
        os.kill(self.pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while alive(self.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL (pid {self.pid}) did not stop")
            time.sleep(0.02)

    def start_again(self) -> None:
        """Start it on the same files and port; returns once it accepts connections."""
        self._pg_ctl("start")

    def _pg_ctl(self, command: str) -> None:
        run(self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", self.options,
            "-l", str(self.datadir.parent / "server.log"), "-w", command)
        self.pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])


def run(as_user: tuple[str, ...], *args: str) -> None:
    result = subprocess.run([*as_user, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")


def start(bindir: Path, durable: bool = False) -> ThrowawayPostgres:
    """initdb + start on a free loopback port; as root, the server runs as the `postgres` user.
    A throwaway trades durability for speed unless asked to be `durable` (fsync and synchronous
    commits on, as in production: for drills that crash it)."""
    base = Path(tempfile.mkdtemp(prefix="sneakers23-pg-"))
    datadir = base / "data"
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        as_user = ("runuser", "-u", "postgres", "--")
    port = free_port()
    run(as_user, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
        "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=300"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    server = ThrowawayPostgres(datadir=datadir, port=port, pid=0, bindir=bindir, options=options, as_user=as_user)
    server.start_again()
    return server
