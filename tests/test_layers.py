"""The package's imports point down its layers, and never in a circle: what each layer may use is
what sits below it (docs/architecture.md draws the same map). Every import counts, including the
ones inside functions."""

from __future__ import annotations

import ast
import sys
from fnmatch import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sneakers23"

LAYERS = [  # lowest first; a module may import from its own layer and the ones below
    ("domain", ["sneakers23.domain", "sneakers23.domain.*"]),
    ("foundations", ["sneakers23", "sneakers23.errors", "sneakers23.settings", "sneakers23.tasks",
                     "sneakers23.retries", "sneakers23.group_commit", "sneakers23.following", "sneakers23.mail",
                     "sneakers23.loop_stalls"]),
    ("database", ["sneakers23.db", "sneakers23.db.*"]),
    ("inventory", ["sneakers23.inventory", "sneakers23.inventory.*"]),
    ("cluster", ["sneakers23.cluster", "sneakers23.actors"]),
    ("actors", ["sneakers23.actors.*"]),
    ("live", ["sneakers23.live"]),
    ("checkout", ["sneakers23.checkout"]),
    ("assembly", ["sneakers23.assembly"]),
    ("entry points", ["sneakers23.command_line", "sneakers23.jobs", "sneakers23.jobs.*", "sneakers23.serve",
                      "sneakers23.serve.*", "sneakers23.node"]),
    ("command line", ["sneakers23.cli"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(module: str) -> int:
    for number, (_name, patterns) in enumerate(LAYERS):
        if any(module == pattern or fnmatch(module, pattern) for pattern in patterns):
            return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that this module imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `from sneakers23.db import queries` → the module
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("sneakers23"):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_import_points_down_the_layers():
    upward = [f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
              for module, targets in graph().items() for target in sorted(targets)
              if layer(target) > layer(module) and not module.startswith(target + ".")]
    assert upward == []


def test_no_module_imports_itself_in_a_circle():
    edges = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in graph().items()}
    circles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(" → ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def third_party_imports(path: Path) -> set[str]:
    """The top-level packages a module imports that are neither Python's own nor ours."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found |= {name.split(".")[0] for name in names
                  if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "sneakers23"}
    return found


def test_the_domain_is_pure_python_and_needs_nothing_of_ours_outside_it():
    domain = {name: path for name, path in modules().items() if layer(name) == 0}
    assert "sneakers23.domain.sales" in domain
    outside = {name: sorted(t for t in targets if layer(t) > 0) for name, targets in graph().items() if name in domain}
    assert {name: targets for name, targets in outside.items() if targets} == {}
    assert {name: sorted(third_party_imports(path)) for name, path in domain.items() if third_party_imports(path)} == {}


def test_the_domain_check_catches_a_third_party_import(tmp_path):
    module = tmp_path / "impure.py"
    module.write_text("import json\nfrom sqlalchemy import select\n\ndef f():\n    import ray.util\n")
    assert third_party_imports(module) == {"sqlalchemy", "ray"}


def test_the_layers_catch_an_upward_import():
    assert layer("sneakers23.domain.sales") < layer("sneakers23.errors")
    assert layer("sneakers23.actors.sales") > layer("sneakers23.inventory")
    assert layer("sneakers23.cli") > layer("sneakers23.jobs.drop") > layer("sneakers23.assembly")
