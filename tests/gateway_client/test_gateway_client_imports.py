"""``gateway_client`` stands alone: httpx and the standard library, nothing else of ours."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gateway_client

PACKAGE = Path(gateway_client.__file__).resolve().parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_imports_only_httpx_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"httpx", "gateway_client"}
    for path in sorted(PACKAGE.glob("*.py")):
        assert _imported_roots(path) <= allowed, path.name


def test_importing_it_loads_nothing_of_the_project() -> None:
    code = (
        "import sys, gateway_client\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(roots & {'yoloserve', 'gateway', 'webapp', 'scripts', 'reporting',"
        " 'pydantic', 'pydantic_settings', 'streamlit'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
