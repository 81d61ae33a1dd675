"""Web replicas follow the nodes: one (or a fixed number) on every live node of the cluster.

Each web replica reads its own node's cache, so a node with a cache but no replica would serve
nobody, and a replica without a node is gone with it. Serve has no "one per node" mode; it has an
autoscaler that asks a policy how many replicas to run, and `max_replicas_per_node`, which keeps
two of them off one node. This policy answers "per_node × the live nodes", so a node that joins
gets its replicas within a few seconds and a node that leaves takes only its own, with nobody
redeploying anything. It runs in Serve's controller on every autoscaling tick, so it counts the
nodes at most once a second.
"""

from __future__ import annotations

import time

import ray

POLICY = "sneakers23.serve.placement:ReplicasPerNode"
COUNT_EVERY_S = 1.0
MAX_NODES = 1000  # a bound Serve needs; far above any cluster this store runs on


class ReplicasPerNode:
    def __init__(self, per_node: int = 1):
        self.per_node = per_node
        self._nodes = 1
        self._counted_at = 0.0

    def live_nodes(self) -> int:
        now = time.monotonic()
        if now - self._counted_at >= COUNT_EVERY_S:
            try:
                self._nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
                self._counted_at = now
            except Exception:  # the GCS is busy or restarting: keep the last count, ask again next tick
                pass
        return self._nodes

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
            "downscale_delay_s": 0,
            "policy": {"policy_function": POLICY, "policy_kwargs": {"per_node": per_node}},
        },
    }
