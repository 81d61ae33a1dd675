"""`sneakers23 serve` as a user runs it: a real process, in a session of its own, stopped by signals.

What it started is found the way the store itself finds it, never by name: the processes of its
session and of the sessions of its descendants (its Ray cluster runs in a session of its own, and
every Ray process keeps that session id, HAProxy included).

Stores take each port's usual number where it is free (6379, 8265, 8404, …), and tests on both of
the suite's workers start them. So a store's start-up, from its choice of ports to its opening, and
its stop, to the check that it freed them, each hold one lock of this machine (`PORTS_LOCK`): no
other store chooses a port meanwhile, so none takes one that another is about to bind, or that a
stop's check is about to look at.
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.waiting import wait_for

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")
PORTS_LOCK = Path(tempfile.gettempdir()) / "sneakers23-store-ports.lock"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test session's Ray and Sneakers23 settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "SNEAKERS23_"))}
    env.update(extra)
    return env


def cli(*args: str, env: dict, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNEAKERS23), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class Proc:
    pid: int
    ppid: int
    session: int
    state: str
    name: str
    nice: int


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # (from the state on: proc(5)'s third field)
        state, ppid, session, nice = fields[0], fields[1], fields[3], fields[16]
        table[int(entry.name)] = Proc(int(entry.name), int(ppid), int(session), state, name, int(nice))
    return table


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports that these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return {port for port, inode in _listeners() if inode in inodes}


def listening_anywhere(ports: set[int]) -> set[int]:
    return {port for port, _inode in _listeners()} & ports


def _listeners() -> list[tuple[int, str]]:
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[9]))
    return found


@dataclass
class StoreProcess:
    """One `sneakers23 serve`, with what it printed and what it started."""

    args: list[str]
    env: dict
    cwd: Path
    process: subprocess.Popen | None = None
    said: list[str] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)  # its own, and its Ray cluster's
    ports: set[int] = field(default_factory=set)  # every port its processes listened on
    # the ports it holds at a number of its choosing: the store's, HAProxy's, the GCS's, the
    # dashboard's (the others are picked by the system, and may go to anyone once freed)
    fixed_ports: set[int] = field(default_factory=set)
    left_listening: set[int] = field(default_factory=set)  # of its fixed ports, those still held after its stop
    _ports_lock: object = None  # the open lock file, while it holds PORTS_LOCK

    def _hold_the_ports(self) -> None:
        if self._ports_lock is not None:
            return
        lock = open(PORTS_LOCK, "a")

        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        try:
            wait_for(taken, timeout=600, interval=0.1, what="another store's start-up or stop to end")
        except BaseException:
            lock.close()
            raise
        self._ports_lock = lock

    def _let_the_ports_go(self) -> None:
        if self._ports_lock is not None:
            self._ports_lock.close()  # (closing the file releases its lock)
            self._ports_lock = None

    def start(self) -> "StoreProcess":
        self._hold_the_ports()
        self._lines: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen([str(SNEAKERS23), "serve", *self.args], env=self.env, cwd=self.cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.sessions = {self.process.pid}
        threading.Thread(target=lambda: [self._lines.put(line) for line in self.process.stdout], daemon=True).start()
        return self

    def output(self) -> str:
        while not self._lines.empty():
            self.said.append(self._lines.get())
        return "".join(self.said)

    def wait_open(self, timeout: float = 300) -> str:
        """Until it says it is open (or exits); returns the address it printed. (300 s: beside the
        `ray up` drill's three hosts, on two busy cores, CI38's second store took more than 180.)"""
        # (A store that fails to open keeps the lock until its test's clean-up has killed it.)
        try:
            wait_for(lambda: "is open at" in self.output() or self.process.poll() is not None, timeout=timeout,
                     interval=0.2, what="the store to open")
        except AssertionError as late:
            raise AssertionError(f"{late}; it said:\n{self.output()[-3000:]}") from None
        assert self.process.poll() is None, f"the store exited with {self.process.returncode}:\n{self.output()}"
        self.note_what_runs()
        self._let_the_ports_go()
        return re.search(r"is open at (\S+)", self.output()).group(1)

    @property
    def cluster_address(self) -> str:
        return re.search(r"Ray cluster at (\S+);", self.output()).group(1)

    def note_what_runs(self) -> None:
        """Remember the sessions and ports of everything it started, to check they are gone later."""
        table = process_table()
        descendants, todo = set(), [self.process.pid]
        while todo:
            parent = todo.pop()
            for proc in table.values():
                if proc.ppid == parent and proc.pid not in descendants:
                    descendants.add(proc.pid)
                    todo.append(proc.pid)
        self.sessions |= {table[pid].session for pid in descendants if pid in table}
        self.ports |= listening_ports(set(self.processes()))
        self.fixed_ports |= listening_ports({pid for pid in self.processes() if table.get(pid) and
                                             table[pid].name == "haproxy"})
        for printed in re.findall(r"(?:Ray cluster at|dashboard \(Ray jobs\) at) \S+?:(\d+)\b", self.output()):
            self.fixed_ports.add(int(printed))

    def processes(self) -> list[int]:
        """Its live processes: those of its sessions (zombies are not processes any more)."""
        return [proc.pid for proc in process_table().values() if proc.session in self.sessions and proc.state != "Z"]

    def names(self) -> list[str]:
        table = process_table()
        return [table[pid].name for pid in self.processes() if pid in table]

    def niceness(self) -> dict[str, set[int]]:
        """Each of its process names with the niceness its processes run at."""
        table, found = process_table(), {}
        for pid in self.processes():
            if pid in table:
                found.setdefault(table[pid].name, set()).add(table[pid].nice)
        return found

    def stop(self, sig: int = signal.SIGTERM, group: bool = True, timeout: float = 10.0) -> float:
        """Send the signal (to its process group, or to the process alone) and wait until every
        process it started is gone; returns the seconds that took (from the signal). Fails past the
        timeout. `left_listening` then says which of its fixed ports are still held."""
        self._hold_the_ports()
        try:
            self.note_what_runs()
            started = time.monotonic()
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
            self.process.wait(timeout)
            wait_for(lambda: not self.processes(), timeout=max(0.1, timeout - (time.monotonic() - started)),
                     interval=0.05, what="every process of the store to be gone")
            took = time.monotonic() - started
            self.left_listening = listening_anywhere(self.fixed_ports)
            return took
        finally:
            self._let_the_ports_go()

    def kill_what_is_left(self) -> None:
        """For a failed test: nothing outlives it either."""
        try:
            self._kill_what_is_left()
        finally:
            self._let_the_ports_go()  # (after: a dying store may hold its ports until it is gone)

    def ports_still_held(self) -> set[int]:
        """Of its fixed ports, those something listens on now (asked while no store chooses any)."""
        self._hold_the_ports()
        try:
            return listening_anywhere(self.fixed_ports)
        finally:
            self._let_the_ports_go()

    def _kill_what_is_left(self) -> None:
        if self.process is None:
            return
        try:
            self.note_what_runs()  # (its Ray cluster's session too, when it died before it opened)
        except OSError:
            pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        try:  # (gone before the ports are let go: a dying process may still hold one)
            wait_for(lambda: not self.processes(), timeout=10, interval=0.05, what="the killed store to be gone")
        except AssertionError:
            pass
