"""Stopping `sneakers23 serve` at any moment: the signals that ask for it, and calls into a
cluster given at most so long (a stop must never hang on a cluster that went away)."""

from __future__ import annotations

import atexit
import signal
import threading

import ray


class StopRequested(BaseException):
    """A stop asked for while the store was starting: unwinds the start-up."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the store to stop. The handler only notes it: one that raised
    could cut a start-up or a clean-up short anywhere. Start-up looks at the note between its steps
    and while it waits (`check`); a running store wakes on it; a stop under way ignores more."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = threading.Event()

    def install(self) -> None:
        """(Again after `ray.init`, which puts in a SIGTERM handler of its own.)"""
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                signal.signal(sig, self._handle)

    def _handle(self, _signum, _frame) -> None:
        self.requested.set()

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested()


class TimeLimitedCall:
    """A call into the cluster, given at most so long: on a cluster that went away, Ray's calls
    wait a minute or more before they fail, and a stop must not. At most one runs at a time; one
    that never came back marks the process, which then exits without waiting for it."""

    stuck = False

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def __call__(self, seconds: float, work):
        if self._thread is not None and self._thread.is_alive():
            raise TimeoutError("an earlier call has not come back")
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["value"] = work()
            except BaseException as error:
                outcome["error"] = error

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._thread.join(seconds)
        if self._thread.is_alive():
            TimeLimitedCall.stuck = True
            atexit.unregister(ray.shutdown)  # Ray's own would wait for that call at exit
            raise TimeoutError(f"no answer within {seconds:.0f}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")
