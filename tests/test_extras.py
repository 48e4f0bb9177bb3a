"""Each install extra is enough for the services it is meant for.

``pip install .[gateway]`` must start the gateway, ``.[reporting]`` the reporting service, and
``.[webapp]`` the web app, ``.[ml]`` the retrain job. Every check runs the entry points in a fresh
interpreter (the venv's) with a ``sys.meta_path`` finder that refuses any top-level module whose
distribution lies outside the dependency closure of ``yoloserve[<extra>]``, so a service that
started to import torch or scikit-learn fails here instead of in its Docker image.

The closure starts from ``pyproject.toml``, not from ``importlib.metadata.requires("yoloserve")``:
an editable install's metadata is a copy taken when it was installed, and goes stale the moment
pyproject changes (the repo's own ``yoloserve.egg-info`` is a second, older copy on ``sys.path``).
Below it, the installed distributions' own requirements are followed, with their extra markers
(``uvicorn[standard]``). The standard library and our own top-level packages are always allowed.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

# What each extra must be able to run: Python statements, run in order in a fresh interpreter.
ENTRY_POINTS: dict[str, str] = {
    "gateway": """
        import gateway.__main__
        import gateway.main
        from gateway.config import Settings
        from gateway.embeddings import default_loader
        from yoloserve.store.settings import StoreSettings, sqlite_url
        store = StoreSettings(database_url=sqlite_url(TMP / "data" / "yoloserve.db"))
        settings = Settings(store=store, data_dir=TMP / "data",
                            embedder_path=ROOT / "models" / "embedder" / "embedder.npz")
        gateway.main.create_app(settings)
        # What the gateway imports on the first /feedback, once it is up.
        default_loader(settings.embedder_path)()
        # Starting a job with RETRAIN_LAUNCHER=queue (make demo, compose): it only queues.
        from yoloserve.retrain.jobs import start_job_process
        from yoloserve.retrain.settings import RetrainSettings
        retrain = RetrainSettings(launcher="queue", store=settings.store,
                                  run_dir=TMP / "run")
        job_id = start_job_process(retrain, trigger="api")
        assert "torch" not in sys.modules and "ultralytics" not in sys.modules, job_id
    """,
    "reporting": """
        import reporting.__main__
        import reporting.service
        import reporting.watch
    """,
    "webapp": """
        import webapp.__main__
        import webapp.client
        import webapp.config
        import webapp.drawing
        import webapp.views.detect
        import webapp.views.feedback
        import webapp.views.models
        import gateway_client
    """,
    # What TorchServe's worker imports (the serving image installs exactly this extra, with
    # no Ultralytics and no torchvision). TorchServe loads serving/handler.py from the .mar as a
    # top-level module, its package yolo_detector beside it; every runtime's module loads.
    "serving": """
        import sys
        sys.path.insert(0, str(ROOT / "serving"))
        import handler
        import yolo_detector.runtimes.onnx
        import yolo_detector.runtimes.openvino
        import yolo_detector.runtimes.torchscript
        import ts.model_service_worker
        import yoloserve.modelserver.serving_default
        assert "ultralytics" not in sys.modules and "torchvision" not in sys.modules
    """,
    "ml": """
        import yoloserve.retrain.__main__
        import yoloserve.retrain.job
        import yoloserve.retrain.trainer
        # The MLflow client the trainer tracks with (mlflow-skinny): a run against a server
        # that is down goes through the client's whole request path, then fails quietly.
        from devstack.ports import free_port
        from yoloserve.tracking import mirror
        from yoloserve.tracking.runs import RunTracker
        from yoloserve.tracking.settings import TrackingSettings
        down = TrackingSettings(tracking_uri=f"http://127.0.0.1:{free_port()}", http_timeout_s=2)
        tracker = RunTracker.start(down, TMP, name="closure")
        assert tracker.run_id is None
        from yoloserve.store.engine import Store
        registry = mirror.Registry(Store.sqlite(TMP / "yoloserve.db"))
        assert mirror.sync_quietly(registry, down, TMP) is None
        from mlflow.entities import Metric, Param, RunTag
    """,
}

# Runs in the child: installs the finder, then the entry points. argv: allowed distributions and
# our own packages (JSON), the entry-point code, a scratch folder.
_CHILD = r'''
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import re
import sys
import sysconfig
from pathlib import Path

allowed, own = (set(v) for v in json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
stdlib = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}
refused = []


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class RefuseOutsideExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if "." in name or name in sys.stdlib_module_names or name in own:
            return None
        dists = {_canon(d) for d in owners.get(name, [])}
        if dists & allowed:
            return None
        if not dists:
            # Not in sys.stdlib_module_names yet part of it (_sysconfigdata_*), or not there at
            # all (the import fails by itself): only a module of no distribution outside the
            # standard library is refused.
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            origin = spec.origin if spec is not None else None
            if spec is None or (origin and stdlib & set(Path(origin).resolve().parents)):
                return None
        refused.append(f"{name} ({', '.join(sorted(dists)) or 'no distribution'})")
        raise ModuleNotFoundError(f"{name} is outside the extra ({sorted(dists)})", name=name)


sys.meta_path.insert(0, RefuseOutsideExtra())
ROOT, TMP = Path.cwd(), Path(sys.argv[3])
try:
    exec(compile(sys.argv[2], "<entry points>", "exec"))
except BaseException:
    import traceback

    traceback.print_exc()
    print("REFUSED " + json.dumps(refused))
    sys.exit(1)
print("REFUSED " + json.dumps(refused))
'''


def _own_packages() -> set[str]:
    # The handler and its package are top-level modules inside TorchServe's worker.
    worker = {"handler", *(p.name for p in (ROOT / "serving").iterdir() if p.is_dir())}
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"tests"} | worker


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(extra: str, pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    """Canonical names of every distribution ``pip install .[extra]`` brings in."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    if extra not in optional:
        raise KeyError(f"pyproject.toml has no extra {extra!r}")
    ours = canonicalize_name(project["name"])
    seen: dict[str, set[str]] = {}
    stack = [Requirement(r) for r in [*project["dependencies"], *optional[extra]]]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        if name == ours:  # ``yoloserve[ml]`` inside another extra: expand it from pyproject
            stack += [Requirement(r) for e in req.extras for r in optional.get(e, [])]
            continue
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        try:
            below = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: nothing of it can be imported in this check either
        stack += [sub for sub in map(Requirement, below) if _applies(sub.marker, seen[name])]
    return set(seen)


def run_with_only(extra: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh venv interpreter that can import only what ``extra`` installs."""
    allowed = sorted(closure(extra))
    return subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([allowed, sorted(_own_packages())]),
         textwrap.dedent(code), str(tmp_path)],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path),
            # Module-level apps (gateway.main:app) build from the environment: keep them here.
            "YOLOSERVE_MODELS_DIR": str(tmp_path / "models"),
            "YOLOSERVE_DATA_DIR": str(tmp_path / "data"),
            "YOLOSERVE_RUN_DIR": str(tmp_path / "run"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("extra", sorted(ENTRY_POINTS))
def test_entry_points_import_only_their_extra(extra: str, tmp_path: Path) -> None:
    done = run_with_only(extra, ENTRY_POINTS[extra], tmp_path)
    assert done.returncode == 0, (
        f"yoloserve[{extra}] does not cover what its entry points import:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )


def test_a_module_outside_the_extra_is_refused(tmp_path: Path) -> None:
    """The check itself: the gateway's closure has neither torch nor scikit-learn."""
    for module in ("torch", "sklearn"):
        done = run_with_only("gateway", f"import {module}", tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"{module} is outside the extra" in done.stderr
    assert run_with_only("gateway", "import fastapi, numpy, json", tmp_path).returncode == 0


def test_closure_follows_extras_of_dependencies() -> None:
    gateway = closure("gateway")
    assert {"fastapi", "starlette", "uvicorn", "psutil", "numpy"} <= gateway
    assert "uvloop" in gateway, "uvicorn[standard] pulls uvloop"
    assert not {"torch", "scikit-learn", "evidently", "streamlit"} & gateway
    assert "torch" in closure("ml") and "evidently" in closure("reporting")
