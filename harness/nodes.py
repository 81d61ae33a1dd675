"""Several Ray nodes on this one machine, each with its own Serve proxy port, and the store's web
applications on them: the tests' session cluster (tests/conftest.py) and the benchmarks that need
more than one node (bench/account_devices.py) stand up the same way."""

from __future__ import annotations

import os

from harness.ports import free_port


def add_node(cluster, name: str, proxy_ports: dict[str, int]):
    """A worker node told apart by the custom resource `name`, whose Serve proxy gets a port of its
    own (noted in `proxy_ports`): on a real cluster every node's proxy listens on the same port of
    its own machine, and here, where the nodes share one machine, a shopper picks a node by its
    port (Serve reads RAY_SERVE_WORKER_PROXY_HTTP_PORT in the node's processes, which inherit the
    raylet's environment)."""
    port = free_port()
    os.environ["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(port)
    try:
        node = cluster.add_node(num_cpus=1, resources={name: 1})
    finally:
        del os.environ["RAY_SERVE_WORKER_PROXY_HTTP_PORT"]
    proxy_ports[name] = port
    return node


PER_NODE = {"Storefront", "ShopperSockets"}  # (the admin desk is one replica for the cluster)


def web_replicas() -> dict[str, dict[str, int]]:
    """The replicas by state of every web deployment that runs on every node, e.g.
    {"ShopperSockets": {"RUNNING": 3}}. (From `serve.status()`: 30 ms of CPU here and more in Serve's
    controller, so poll it every half second, not every 20 ms: CI88's scale-out test spent 49 s so.)"""
    from ray import serve

    return {name: {getattr(state, "value", state): count for state, count in deployment.replica_states.items() if count}
            for app in serve.status().applications.values() for name, deployment in app.deployments.items()
            if name in PER_NODE}


def web_replicas_running(count: int) -> bool:
    """True once every web deployment runs exactly `count` replicas and has none on the way."""
    replicas = web_replicas()
    return bool(replicas) and all(states == {"RUNNING": count} for states in replicas.values())


def web_replicas_scaled_to(count: int) -> bool:
    """True once every web deployment runs exactly `count` replicas and starts none: Serve has
    scaled it to `count`. A replica it could place nowhere (a lost node's, tried again) may still be
    stopping: one that never started takes Serve's whole graceful period to go (20 s)."""
    replicas = web_replicas()
    return bool(replicas) and all(states.get("RUNNING") == count and set(states) <= {"RUNNING", "STOPPING"}
                                  for states in replicas.values())


def deploy_store(settings_args: dict, port: int) -> str:
    """The store's Serve applications, with a proxy on every node (the head's on `port`); returns
    the head's address. The caller waits for the replicas it needs."""
    from ray import serve

    from sneakers23.serve.deploy import APPS

    serve.start(proxy_location="EveryNode", http_options={"host": "127.0.0.1", "port": port})
    for name, route_prefix, build in APPS:
        serve.run(build(settings_args), name=name, route_prefix=route_prefix)
    return f"http://127.0.0.1:{port}"


def remove_store() -> None:
    from ray import serve

    from sneakers23.serve.deploy import APPS

    for name, _prefix, _build in APPS:
        serve.delete(name)
    serve.shutdown()
