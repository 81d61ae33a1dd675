"""The first process of a rehearsal host (tests/support/hosts.py): PID 1 of the host's PID namespace.

It gives the host its own files (mounts), starts the host's one service (sshd, or PostgreSQL), and
reaps whatever is orphaned to it, as an init does, so that a zombie never looks alive to `ray stop`.
When it ends, SIGTERM or SIGKILL from outside, the kernel kills every process of the host: that is
the host powering off.

Standard library only, and everything imported before the mounts: they may hide the directories
Python was started from.
"""

import json
import os
import signal
import subprocess
import sys
import time


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def give_the_host_its_files(plan: dict) -> None:
    if plan.get("hostname"):
        subprocess.run(["hostname", plan["hostname"]], check=True)
    for path, mode in plan.get("tmpfs", {}).items():
        mount("-t", "tmpfs", "-o", f"mode={mode}", "tmpfs", path)
    for path in plan.get("dirs", []):
        os.makedirs(path, mode=0o755, exist_ok=True)
    for source, target in plan.get("binds", []):
        mount("--bind", source, target)
    # The host's own /tmp last, with the paths it must keep seeing (the operator's virtual
    # environment, when it lives under /tmp) carried into it.
    if "tmp" in plan:
        own = plan["tmp"]
        for keep in plan.get("keep_in_tmp", []):
            inside = os.path.join(own, os.path.relpath(keep, "/tmp"))
            os.makedirs(inside, exist_ok=True)
            mount("--bind", keep, inside)
        mount("--rbind", own, "/tmp")


def main() -> None:
    plan = json.loads(sys.argv[1])
    give_the_host_its_files(plan)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    service = None
    if plan.get("service"):
        log = open(plan["log"], "ab", buffering=0)
        service = subprocess.Popen(plan["service"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=plan.get("env") or None)
    print("up", flush=True)  # the harness waits for this line
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if service is not None and pid == service.pid:
            print(f"the service ended ({status})", file=sys.stderr, flush=True)
            service = None
        if pid == 0:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
