"""The import rules of ``yoloserve`` (its ``__init__`` docstrings), checked on every module's AST.

Every import counts, lazy ones inside functions too: a lazy import is still a dependency. A module
belongs to the foundation (a top-level module: ``paths``, ``errors``, ...) or to its sub-package;
each may import only the layers listed in ``MAY_IMPORT``, and nothing of the repository's other
top-level folders (services, tools, tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "yoloserve"
FOUNDATION = "foundation"
SUBPACKAGES = ("modelserver", "embeddings", "training", "feedback", "tracking", "retrain")

# Layer -> the layers of yoloserve it may import (its own included).
MAY_IMPORT: dict[str, set[str]] = {
    FOUNDATION: {FOUNDATION},
    "modelserver": {FOUNDATION, "modelserver"},
    "embeddings": {FOUNDATION, "embeddings"},
    "training": {FOUNDATION, "training"},
    "feedback": {FOUNDATION, "embeddings", "feedback"},
    "tracking": {FOUNDATION, "modelserver", "tracking"},
    "retrain": {FOUNDATION, *SUBPACKAGES},
}
# Named in the rules; any other top-level folder of the repo with Python in it is refused too.
SERVICES_AND_TOOLS = {"gateway", "reporting", "webapp", "scripts", "devstack", "benchmarks"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of everything ``path`` imports, relative imports resolved."""
    tree = ast.parse(source, filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # ``from yoloserve import paths`` imports the module yoloserve.paths.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def layer_of(module: str) -> str | None:
    """The layer of a ``yoloserve`` module (None: not ours)."""
    parts = module.split(".")
    if parts[0] != "yoloserve":
        return None
    if len(parts) == 1:
        return FOUNDATION  # the package's own __init__
    return parts[1] if parts[1] in SUBPACKAGES or (PACKAGE / parts[1]).is_dir() else FOUNDATION


def violations(path: Path, repo_folders: set[str], source: str | None = None) -> list[str]:
    """Every import of ``path`` (or of ``source`` as if it were there) that breaks the rules."""
    module = _module_name(path)
    own = layer_of(module)
    assert own is not None, module
    found = []
    for line, name in _imports(path, path.read_text() if source is None else source):
        top = name.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line} imports {name}"
        if top in repo_folders:
            found.append(f"{where}: yoloserve imports no service or tool ({top}/)")
        target = layer_of(name)
        if target is None:
            continue
        if target not in MAY_IMPORT:
            found.append(f"{where}: {target} is a sub-package without rules in MAY_IMPORT")
        elif target not in MAY_IMPORT.get(own, set()):
            found.append(f"{where}: {own} may import only {sorted(MAY_IMPORT[own])}")
    return found


def _repo_folders() -> set[str]:
    folders = {
        p.name for p in ROOT.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "yoloserve"
        and any(p.glob("*.py"))
    }
    return folders | SERVICES_AND_TOOLS | {"serving", "tests"}


def test_every_module_keeps_to_its_layer() -> None:
    folders = _repo_folders()
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30, "the walk found the package"
    broken = [v for path in modules for v in violations(path, folders)]
    assert not broken, "\n".join(broken)


def test_every_subpackage_has_rules_and_says_them() -> None:
    found = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert found == set(SUBPACKAGES), "a new sub-package needs its line in MAY_IMPORT"
    for name in (*SUBPACKAGES, ""):
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc, f"yoloserve/{name}/__init__.py has no docstring"
        assert "May import" in doc or name == "", f"yoloserve/{name}: say what it may import"


@pytest.mark.parametrize(
    ("where", "source", "broken"),
    [
        ("training/x.py", "from yoloserve.modelserver.registry import Registry\n", True),
        ("training/x.py", "def f():\n    from yoloserve.modelserver import MODEL_NAME\n", True),
        ("feedback/x.py", "from yoloserve.embeddings.embedder import Embedder\n", False),
        ("embeddings/x.py", "from yoloserve.feedback import store\n", True),
        ("embeddings/x.py", "from . import descriptor\nfrom ..files import atomic_write\n", False),
        ("embeddings/x.py", "from ..feedback import store\n", True),
        ("x.py", "from yoloserve import paths, errors\n", False),
        ("x.py", "import yoloserve.retrain.jobs\n", True),
        ("retrain/x.py", "from yoloserve.feedback.store import CsvStore\n", False),
        ("modelserver/x.py", "import gateway.config\n", True),
        ("modelserver/x.py", "from scripts import train\n", True),
        ("modelserver/x.py", "import numpy, httpx\n", False),
        # The Kubernetes client is foundation: the deployer and the Job launcher share it.
        ("modelserver/x.py", "from yoloserve.kube import AsyncKubeClient\n", False),
        ("retrain/x.py", "from yoloserve.kube import KubeClient\n", False),
        ("x.py", "from yoloserve.modelserver.kserve import KServeDeployer\n", True),
    ],
)
def test_the_checker_sees_a_broken_rule(where: str, source: str, broken: bool) -> None:
    """A planted import: the check must catch it, or the rules could rot unseen."""
    assert bool(violations(PACKAGE / where, _repo_folders(), source)) is broken
