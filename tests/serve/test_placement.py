"""The policy that keeps web replicas on every live node (the cluster test shows it at work)."""

from __future__ import annotations

from types import SimpleNamespace

import ray

from sneakers23.serve import placement
from sneakers23.serve.placement import ReplicasPerNode, on_every_node


def nodes(alive: int, dead: int = 0) -> list[dict]:
    return [{"Alive": True}] * alive + [{"Alive": False}] * dead


def test_it_asks_for_per_node_replicas_on_every_live_node_and_keeps_the_policy_state(monkeypatch):
    monkeypatch.setattr(ray, "nodes", lambda: nodes(3, dead=2))
    ctx = SimpleNamespace(policy_state={"kept": 1})
    assert ReplicasPerNode()(ctx) == (3, {"kept": 1})
    assert ReplicasPerNode(per_node=2)(ctx)[0] == 6


def test_it_counts_the_nodes_at_most_once_a_second_and_keeps_the_last_count_on_errors(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(placement.time, "monotonic", lambda: clock[0])
    counted = nodes(2)
    monkeypatch.setattr(ray, "nodes", lambda: counted)
    policy, ctx = ReplicasPerNode(), SimpleNamespace(policy_state={})
    assert policy(ctx)[0] == 2
    counted = nodes(4)
    assert policy(ctx)[0] == 2  # within the second: the count it has
    clock[0] += placement.COUNT_EVERY_S
    assert policy(ctx)[0] == 4

    def unreachable():
        raise ConnectionError("the GCS is restarting")

    monkeypatch.setattr(ray, "nodes", unreachable)
    clock[0] += placement.COUNT_EVERY_S
    assert policy(ctx)[0] == 4


def test_the_deployment_options_keep_replicas_apart_and_act_at_once():
    options = on_every_node(2)
    assert options["max_replicas_per_node"] == 2
    autoscaling = options["autoscaling_config"]
    assert autoscaling["min_replicas"] == 2 and autoscaling["upscale_delay_s"] == autoscaling["downscale_delay_s"] == 0
    assert autoscaling["policy"] == {"policy_function": placement.POLICY, "policy_kwargs": {"per_node": 2}}
    from ray.serve.config import AutoscalingConfig

    assert AutoscalingConfig(**autoscaling).policy.policy_function == placement.POLICY  # Serve accepts it
