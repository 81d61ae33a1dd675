"""The package as `pip install .` builds it: a wheel that carries the pages' templates and static
files and the migrations, and that, installed elsewhere, serves the store's pages and files and
migrates a database from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INSTALLED_CHECK = r"""
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
import sneakers23
from sneakers23.serve import render
from sneakers23.serve.storefront import store_api

client = TestClient(store_api)
print(json.dumps({
    "package": sneakers23.__file__,
    "templates": str(render.TEMPLATES),
    "static": str(render.STATIC),
    "page": render.catalog_page([])[:15],
    "css": client.get("/static/css/store.css").status_code,
    "js": client.get("/static/js/store.js").status_code,
    "phoenix": client.get("/static/vendor/phoenix/phoenix.mjs").status_code,
}))
"""


def test_a_wheel_carries_the_pages_static_files_and_migrations_and_serves_them_once_installed(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    # A new user's first install says nothing of how the package is laid out (a screenful a folder).
    assert "is absent from the `packages` configuration" not in built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("sneakers23-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {f"sneakers23/{path.relative_to(ROOT / 'sneakers23')}" for path in (ROOT / "sneakers23").rglob("*.py")}
    shipped = {f"sneakers23/{folder}/{path.relative_to(ROOT / folder)}"
               for folder in ("templates", "static") for path in (ROOT / folder).rglob("*") if path.is_file()}
    assert source - names == set(), "every module of the source tree is in the wheel"
    assert {name for name in names if name.endswith(".py")} - source == set(), "and no other (a stale build/)"
    assert shipped - names == set(), "every template and static file is in the wheel"
    assert "sneakers23/db/migrations/script.py.mako" in names

    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "SNEAKERS23_DATABASE_URL": f"sqlite:///{elsewhere / 'shop.db'}"}
    env.pop("SNEAKERS23_TEMPLATES", None)
    env.pop("SNEAKERS23_STATIC", None)
    checked = subprocess.run([sys.executable, "-c", INSTALLED_CHECK], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    seen = json.loads(checked.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(site), "the installed package, not the repository's"
    assert Path(seen["templates"]) == site / "sneakers23" / "templates"
    assert Path(seen["static"]) == site / "sneakers23" / "static"
    assert seen["page"].startswith("<!DOCTYPE html>")
    assert (seen["css"], seen["js"], seen["phoenix"]) == (200, 200, 200)

    for command in (["db", "upgrade"], ["db", "seed"], ["products", "--json"]):
        run = subprocess.run([sys.executable, "-m", "sneakers23.cli", *command], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert [product["sku"] for product in json.loads(run.stdout)] == ["SHU6000", "SHU6100"]
