"""Sales and refusals across the cluster, per second, for the admin dashboard and for ops' metrics.

Every process that sells or refuses (page and channel replicas, buyers of a drop job, the CLI)
counts through the inventory's Activity port, `RayActivity`: once a second its counts go to Ray's
metrics (Prometheus) and, in one call, to the cluster's activity actor, which keeps the last
minutes. A count lost with a crashed process only makes the dashboard's figure low for
that second; the database stays the record of what sold.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

import ray
from ray.util import metrics

from sneakers23.cluster import ACTIVITY_NAME, NAMESPACE, ON_HEAD_NODE, detached
from sneakers23.domain.activity import ActivityWindow, Buckets, Tally

log = logging.getLogger(__name__)

HAND_ON_S = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class Activity:
    def __init__(self):
        self._window = ActivityWindow()

    async def add(self, buckets: Buckets) -> None:
        self._window.add(buckets, time.time())

    async def last_minute(self) -> dict:
        return self._window.last_minute(time.time())


def activity_actor():
    """The cluster's activity actor, started if it is not running (detached: it outlives us). Only
    the store's start makes it (sneakers23.assembly); the others look it up (`find_activity`)."""
    return detached(Activity, ACTIVITY_NAME, resources=ON_HEAD_NODE).remote()


def find_activity():
    """The running activity actor; ValueError where the store's actors are not running."""
    return ray.get_actor(ACTIVITY_NAME, namespace=NAMESPACE)


class RayActivity:
    """The inventory's Activity port on a Ray cluster: a count is a few additions under a lock; once
    a second, a thread of its own hands the sums to Ray's metrics and to the activity actor, so
    that sync and async callers alike never wait for either."""

    def __init__(self):
        self._tally = Tally()
        self._lock = threading.Lock()
        self._sold = metrics.Counter("sneakers23_pairs_sold", "Pairs sold (committed)")
        self._refused = metrics.Counter("sneakers23_refusals", "Shoppers refused, by reason", tag_keys=("reason",))
        self._actor = None
        self._handed: ray.ObjectRef | None = None  # the last hand-on, checked at the next
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._hand_on_forever, name="sneakers23-activity", daemon=True)
        self._thread.start()
        atexit.register(self.hand_on)  # a CLI command's last counts

    def sold(self, pairs: int) -> None:
        if pairs > 0:
            with self._lock:
                self._tally.sold(pairs, time.time())

    def refused(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._tally.refused(reason, time.time(), count)

    def _hand_on_forever(self) -> None:
        while True:
            self._wake.wait(HAND_ON_S)
            self.hand_on()

    def hand_on(self) -> None:
        with self._lock:
            buckets = self._tally.take()
        if not buckets:
            return
        # To the metrics in sums, here, off the path of the purchase or refusal being counted.
        sold = sum(pairs for pairs, _refusals in buckets.values())
        if sold:
            self._sold.inc(sold)
        refusals: dict[str, int] = {}
        for _pairs, by_reason in buckets.values():
            for reason, count in by_reason.items():
                refusals[reason] = refusals.get(reason, 0) + count
        for reason, count in refusals.items():
            self._refused.inc(count, tags={"reason": reason})
        try:
            if self._handed is not None and ray.wait([self._handed], timeout=0)[0]:
                ray.get(self._handed)  # raises when the actor it went to is gone: find it again
            if self._actor is None:
                self._actor = find_activity()
            # Not waited for: a second lost is only a low figure on the dashboard.
            self._handed = self._actor.add.remote(buckets)
        except Exception as error:  # (ValueError: the store's actors are not running)
            self._actor = self._handed = None
            log.info("the activity of the last second could not be handed on: %s", error)
