"""The policy that keeps web replicas on every live node (the cluster test shows it at work)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import ray

from sneakers23.serve import placement
from sneakers23.serve.placement import ReplicasPerNode, on_every_node


def nodes(alive: int, dead: int = 0) -> list[dict]:
    return [{"Alive": True}] * alive + [{"Alive": False}] * dead


def counted_here(per_node: int = 1) -> ReplicasPerNode:
    """A policy whose counting thread is not started: the test counts by hand."""
    policy = ReplicasPerNode(per_node)
    policy._counting = threading.current_thread()
    return policy


def test_it_asks_for_per_node_replicas_on_every_live_node_and_keeps_the_policy_state(monkeypatch):
    monkeypatch.setattr(ray, "nodes", lambda: nodes(3, dead=2))
    ctx = SimpleNamespace(policy_state={"kept": 1})
    for per_node, wanted in ((1, 3), (2, 6)):
        policy = counted_here(per_node)
        policy._count()
        assert policy(ctx) == (wanted, {"kept": 1})


def test_it_answers_from_the_last_count_and_keeps_it_when_the_gcs_is_away(monkeypatch):
    counted = nodes(2)
    monkeypatch.setattr(ray, "nodes", lambda: counted)
    policy, ctx = counted_here(), SimpleNamespace(policy_state={})
    policy._count()
    assert policy(ctx)[0] == 2
    counted = nodes(4)
    assert policy(ctx)[0] == 2  # not counted again yet
    policy._count()
    assert policy(ctx)[0] == 4

    def unreachable():
        raise ConnectionError("the GCS is restarting")

    monkeypatch.setattr(ray, "nodes", unreachable)
    policy._count()
    assert policy(ctx)[0] == 4


def test_the_first_call_counts_and_starts_the_counting_thread(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "nodes", lambda: calls.append(1) or nodes(5))
    monkeypatch.setattr(placement, "COUNT_EVERY_S", 3600)  # the thread sleeps through the test
    policy = ReplicasPerNode()
    assert policy(SimpleNamespace(policy_state={}))[0] == 5 and calls == [1]
    assert policy._counting.is_alive() and policy._counting.daemon


def test_the_deployment_options_keep_replicas_apart_and_scale_down_only_after_serve_saw_the_loss():
    options = on_every_node(2)
    assert options["max_replicas_per_node"] == 2
    autoscaling = options["autoscaling_config"]
    assert autoscaling["min_replicas"] == 2 and autoscaling["upscale_delay_s"] == 0
    assert autoscaling["downscale_delay_s"] >= 30  # three of Serve's health-check periods
    assert autoscaling["policy"] == {"policy_function": placement.POLICY, "policy_kwargs": {"per_node": 2}}
    from ray.serve._private.autoscaling_state import _resolve_policy_callable
    from ray.serve.config import AutoscalingConfig

    # What Serve's controller does with it: build the class once, with the keyword arguments.
    built = _resolve_policy_callable(AutoscalingConfig(**autoscaling).policy)
    assert isinstance(built, ReplicasPerNode) and built.per_node == 2
