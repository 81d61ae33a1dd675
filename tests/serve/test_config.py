"""The Serve config file for clusters passes Ray's own validation and names real builders."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_the_serve_config_is_valid_and_every_key_is_one_ray_knows():
    raw = yaml.safe_load(CONFIG.read_text())
    ServeDeploySchema.model_validate(raw)  # what `serve deploy` runs
    assert set(raw) <= set(ServeDeploySchema.model_fields)  # it ignores unknown keys: check them
    assert set(raw["http_options"]) <= set(HTTPOptionsSchema.model_fields)
    for app in raw["applications"]:
        assert set(app) <= set(ServeApplicationSchema.model_fields)


def test_the_serve_config_deploys_what_sneakers23_serve_runs():
    from sneakers23.serve.deploy import APPS

    raw = yaml.safe_load(CONFIG.read_text())
    apps = {app["name"]: app for app in raw["applications"]}
    assert {name: apps[name]["route_prefix"] for name, _prefix, _build in APPS} == {
        name: prefix for name, prefix, _build in APPS
    }
    for name, _prefix, build in APPS:
        module, attribute = apps[name]["import_path"].split(":")
        assert getattr(importlib.import_module(module), attribute) is build


def test_the_builders_refuse_sqlite_on_several_machines_and_a_missing_secret(monkeypatch):
    import pytest
    import ray

    from sneakers23.errors import Sneakers23Error
    from sneakers23.serve.sockets import build_channels
    from sneakers23.serve.storefront import build_store

    machines = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}, {"Alive": True, "NodeManagerAddress": "10.0.0.2"}]
    monkeypatch.setattr(ray, "nodes", lambda: machines)
    secret = "s" * 32
    for build in (build_store, build_channels):
        with pytest.raises(Sneakers23Error, match="PostgreSQL"):
            build({"database_url": "sqlite:///shop.db", "secret_key": secret})
        with pytest.raises(Sneakers23Error, match="SNEAKERS23_SECRET_KEY"):
            build({"database_url": "postgresql+psycopg://h/db"})
        from ray.serve import Application

        assert isinstance(build({"database_url": "postgresql+psycopg://h/db", "secret_key": secret}), Application)
