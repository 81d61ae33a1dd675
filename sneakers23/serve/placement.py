"""Web replicas follow the nodes: one (or a fixed number) on every live node of the cluster.

Each web replica reads its own node's cache, so a node with a cache but no replica would serve
nobody, and a replica without a node is gone with it. Serve has no "one per node" mode; it has an
autoscaler that asks a policy how many replicas to run, and `max_replicas_per_node`, which keeps
two of them off one node. This policy answers "per_node × the live nodes", so a node that joins
gets its replicas within a few seconds and a node that leaves takes only its own, with nobody
redeploying anything. It runs in Serve's controller on every autoscaling tick, so it answers from
a count that a thread of its own refreshes every second.
"""

from __future__ import annotations

import threading
import time

import ray

POLICY = "sneakers23.serve.placement:ReplicasPerNode"
COUNT_EVERY_S = 1.0
DOWNSCALE_DELAY_S = 30
MAX_NODES = 1000  # a bound Serve needs; far above any cluster this store runs on


class ReplicasPerNode:
    def __init__(self, per_node: int = 1):
        self.per_node = per_node
        self._nodes = 1
        self._counting: threading.Thread | None = None

    def live_nodes(self) -> int:
        """The last count. Counting asks the GCS, which may be slow or away: a thread of its own
        does it, so Serve's controller loop never waits for it."""
        if self._counting is None:
            self._counting = threading.Thread(target=self._count_forever, name="count-nodes", daemon=True)
            self._counting.start()
            self._count()
        return self._nodes

    def _count(self) -> None:
        try:
            self._nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
        except Exception:  # the GCS is busy or restarting: keep the last count
            pass

    def _count_forever(self) -> None:
        while True:
            time.sleep(COUNT_EVERY_S)
            self._count()

    def __call__(self, ctx) -> tuple[int, dict]:
        return self.per_node * self.live_nodes(), ctx.policy_state


def on_every_node(per_node: int = 1) -> dict:
    """Deployment options that keep `per_node` replicas on every live node."""
    return {
        "max_replicas_per_node": per_node,
        "autoscaling_config": {
            "min_replicas": per_node,
            "initial_replicas": per_node,
            "max_replicas": per_node * MAX_NODES,
            # Nodes are counted, not guessed from load: act on a count at once.
            "upscale_delay_s": 0,
            # Down only once Serve has seen the lost node's replicas die (health checks every
            # 10 s): sooner, it may stop a replica on a surviving node instead, with its sockets.
            "downscale_delay_s": DOWNSCALE_DELAY_S,
            "policy": {"policy_function": POLICY, "policy_kwargs": {"per_node": per_node}},
        },
    }
