"""cluster.yaml passes the checks `ray up` runs, and every key in it is one Ray knows. (What its commands
start, and that `ray stop` ends all of it, HAProxy included, within its grace period: the `ray up` drill,
tests/test_ray_up.py.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config


ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_passes_rays_own_validation():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert set(config) <= set(SCHEMA["properties"])  # the schema allows no others; checked plainly too
    assert set(config["auth"]) <= set(SCHEMA["properties"]["auth"]["properties"])
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs
    assert config["provider"]["type"] == "local" and config["max_workers"] == len(config["provider"]["worker_ips"])


def test_cluster_yaml_keeps_secrets_out_and_token_authentication_on():
    text = (ROOT / "cluster.yaml").read_text()
    assert "sneakers23.env" in text and "RAY_AUTH_MODE=disabled" not in text
    example = (ROOT / "sneakers23.env.example").read_text()
    assert "RAY_AUTH_MODE=token" in example
    assert "sneakers23.env" in (ROOT / ".gitignore").read_text().split()
    assert "serve deploy serve_config.yaml" in text and "ulimit -n" in text


def test_cluster_yaml_starts_ray_as_sneakers23_serve_does():
    """Every node's Ray gets the request path and the workers' priority `sneakers23 serve` gives its own
    cluster (sneakers23/serve/local_cluster.py), and the head Serve's patience with a starting proxy."""
    from sneakers23.serve.local_cluster import REQUEST_PATH, SERVE_PATIENCE, WORKER_PRIORITY

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head, workers = (" ".join(config[key]).split() for key in ("head_start_ray_commands", "worker_start_ray_commands"))
    every_node = {**REQUEST_PATH, **WORKER_PRIORITY}
    assert {f"{name}={value}" for name, value in {**every_node, **SERVE_PATIENCE}.items()} <= set(head)
    assert {f"{name}={value}" for name, value in every_node.items()} <= set(workers)
