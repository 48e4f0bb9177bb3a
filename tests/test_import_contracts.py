"""The import rules of ``[tool.importlinter]`` in pyproject.toml, checked by ``lint-imports``.

The tree must keep every contract. So that the check cannot pass for nothing (a root package not
found, a contract that matches no module), each contract is also shown a planted import it must
refuse: the packages are copied to a temporary folder with pyproject.toml, one import is added
to one module, and ``lint-imports`` runs there, on that contract.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` in ``cwd`` on its pyproject.toml; only ``contracts`` (ids) when given."""
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    args += [f"--contract={c}" for c in contracts]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root packages and pyproject.toml, copied once."""
    out = tmp_path_factory.mktemp("pristine")
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, out / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", out / "pyproject.toml")
    return out


@pytest.mark.parametrize(
    ("where", "source", "contract", "broken"),
    [
        # Layers inside yoloserve (docs/architecture.md's table).
        ("yoloserve/training/planted.py", "from yoloserve.modelserver.registry import Registry\n",
         "yoloserve-layers", True),
        ("yoloserve/training/planted.py",
         "def f():\n    from yoloserve.modelserver import MODEL_NAME\n", "yoloserve-layers", True),
        ("yoloserve/embeddings/planted.py", "from yoloserve.feedback import store\n",
         "yoloserve-layers", True),
        ("yoloserve/embeddings/planted.py", "from ..feedback import store\n",
         "yoloserve-layers", True),
        ("yoloserve/boxes.py", "import yoloserve.retrain.jobs\n", "yoloserve-layers", True),
        ("yoloserve/boxes.py", "from yoloserve.modelserver.rollout.kserve import KServeDeployer\n",
         "yoloserve-layers", True),
        # Exhaustive: a new sub-package or top-level module needs its place in the layers.
        ("yoloserve/planted/__init__.py", '"""New."""\n', "yoloserve-layers", True),
        ("yoloserve/planted.py", "import json\n", "yoloserve-layers", True),
        ("yoloserve/feedback/planted.py", "from yoloserve.modelserver.registry import Registry\n",
         "feedback-imports-embeddings-only", True),
        ("yoloserve/tracking/planted.py", "from yoloserve.training import dataset\n",
         "tracking-imports-modelserver-only", True),
        # A circle between siblings, hidden in a function: what rollout/ and launchers/ were.
        ("yoloserve/modelserver/rollout/base.py",
         "def f():\n    from yoloserve.modelserver.rollout.kserve import KServeDeployer\n",
         "yoloserve-acyclic", True),
        ("yoloserve/retrain/launchers/base.py",
         "def f():\n    from yoloserve.retrain.launchers.factory import launcher_from_settings\n",
         "yoloserve-acyclic", True),
        # Nothing of a service or tool in yoloserve.
        ("yoloserve/modelserver/planted.py", "import gateway.config\n",
         "yoloserve-imports-no-service", True),
        ("yoloserve/modelserver/planted.py", "from scripts import train\n",
         "yoloserve-imports-no-service", True),
        ("yoloserve/retrain/planted.py", "import tests.support\n",
         "yoloserve-imports-no-service", True),
        # The services.
        ("webapp/planted.py", "import yoloserve.paths\n", "webapp-over-http", True),
        ("gateway_client/planted.py", "import gateway.config\n", "webapp-over-http", True),
        ("gateway/planted.py", "import torch\n", "gateway-without-ml", True),
        ("gateway/planted.py", "def f():\n    from ultralytics import YOLO\n",
         "gateway-without-ml", True),
        ("serving/handler.py", "import yoloserve.paths\n", "handler-self-contained", True),
        ("gateway/planted.py", "from yoloserve.modelserver.rollout.factory import "
         "deployer_from_settings\n", "gateway-data-plane", True),
        ("gateway/planted.py", "from yoloserve.retrain import jobs\n", "gateway-data-plane", True),
        # Through another module of ours: still the gateway's dependency.
        ("yoloserve/schemas.py", "import yoloserve.kube\n", "gateway-data-plane", True),
        ("gateway/planted.py", "from yoloserve.controller.loop import Controller\n",
         "gateway-data-plane", True),
        # What the rules allow.
        ("yoloserve/feedback/planted.py", "from yoloserve.embeddings.embedder import Embedder\n",
         None, False),
        ("yoloserve/embeddings/planted.py",
         "from . import descriptor\nfrom ..files import atomic_write\n", None, False),
        ("yoloserve/boxes.py", "from yoloserve import paths, errors\n", None, False),
        ("yoloserve/retrain/planted.py", "from yoloserve.feedback.store import CsvStore\n",
         None, False),
        ("yoloserve/modelserver/planted.py", "import numpy, httpx\n", None, False),
        # The Kubernetes client is foundation: the deployer and the Job launcher share it.
        ("yoloserve/modelserver/planted.py", "from yoloserve.kube import AsyncKubeClient\n",
         None, False),
        ("yoloserve/tracking/planted.py", "from yoloserve.modelserver.registry import Registry\n",
         None, False),
        ("webapp/planted.py", "import gateway_client\n", None, False),
    ],
)
def test_a_planted_import_is_refused_by_its_contract(
    pristine: Path, tmp_path: Path, where: str, source: str, contract: str | None, broken: bool
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    target = tree / where
    target.parent.mkdir(parents=True, exist_ok=True)
    before = target.read_text() if target.exists() else ""
    target.write_text(before + "\n" + source)

    result = lint_imports(tree, *([contract] if contract else []))
    output = result.stdout + result.stderr
    assert result.returncode == (1 if broken else 0), output
    if broken:
        assert "BROKEN" in output and "Contracts: 0 kept, 1 broken" in output, output


def test_every_subpackage_says_what_it_may_import() -> None:
    """The contracts are the check; each sub-package's docstring is where a reader finds them."""
    assert ast.get_docstring(ast.parse((ROOT / "yoloserve/__init__.py").read_text()))
    inits = sorted((ROOT / "yoloserve").glob("*/__init__.py"))
    assert len(inits) >= 6, "the glob found the sub-packages"
    for init in inits:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "May import" in doc, f"{init.relative_to(ROOT)}: say what it may import"
