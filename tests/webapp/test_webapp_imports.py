"""The web app's import boundaries: HTTP only (through ``gateway_client``), views form a DAG."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import webapp

WEBAPP = Path(webapp.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_webapp_imports_nothing_of_the_services_or_the_shared_package() -> None:
    code = (
        "import sys, webapp.__main__, webapp.views.detect, webapp.views.models\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(roots & {'yoloserve', 'gateway', 'scripts', 'reporting', 'serving'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_views_import_each_other_without_a_cycle() -> None:
    views = {p.stem: p for p in (WEBAPP / "views").glob("*.py") if p.stem != "__init__"}
    graph = {
        name: {other for other in views if f"webapp.views.{other}" in _imports(path)}
        for name, path in views.items()
    }
    assert graph["detect"] >= {"feedback", "session"}  # the edges that once made a cycle
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"views import each other in a cycle: {exc.args[1]}") from None
    assert set(order) == set(views)
