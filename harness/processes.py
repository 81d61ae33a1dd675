"""Processes the tests started, looked at by process id."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """The process runs: it exists and is not a zombie (an exited child not yet reaped still answers
    signal 0). Its state follows the last ")" in /proc/PID/stat, since a command name may hold one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
