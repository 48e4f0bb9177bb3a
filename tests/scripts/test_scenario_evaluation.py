"""``scripts.scenario.evaluation``: the weights of a version, out of its ``.mar``, checked.

Scoring (Ultralytics) and reporting runs need the real platform; the scenario as a whole is
run by hand (`make scenario`).
"""

from __future__ import annotations

import hashlib
import random
import zipfile
from pathlib import Path

import pytest

from scripts.scenario.errors import ScenarioError
from scripts.scenario.evaluation import weights_of
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store


def _registry_with(tmp_path: Path, weights: bytes, sha: str | None = None) -> Registry:
    registry = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    registry.add_version(
        sha256=sha or hashlib.sha256(weights).hexdigest(), mar="yolo_v1.mar",
        classes=["circle", "square", "triangle"], version="1", make_default=True,
    )
    return registry


def _mar(store: Path, members: dict[str, bytes]) -> None:
    store.mkdir(exist_ok=True)
    with zipfile.ZipFile(store / "yolo_v1.mar", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_weights_come_out_of_the_mar_checked(tmp_path: Path) -> None:
    weights = random.Random(0).randbytes(1000)
    registry = _registry_with(tmp_path, weights)
    _mar(tmp_path / "store", {"best.pt": weights, "handler.py": b"", "MAR-INF/MANIFEST.json": b""})
    out = weights_of("1", registry, tmp_path / "store", tmp_path)
    assert out.read_bytes() == weights


def test_weights_that_differ_from_the_registry_are_refused(tmp_path: Path) -> None:
    registry = _registry_with(tmp_path, b"other", sha=hashlib.sha256(b"other").hexdigest())
    _mar(tmp_path / "store", {"best.pt": b"weights"})
    with pytest.raises(ScenarioError, match="sha256"):
        weights_of("1", registry, tmp_path / "store", tmp_path)


def test_missing_mar_is_a_clear_error(tmp_path: Path) -> None:
    registry = _registry_with(tmp_path, b"w")
    with pytest.raises(ScenarioError, match="not found"):
        weights_of("1", registry, tmp_path / "store", tmp_path)


def test_missing_mar_says_where_to_run(tmp_path: Path) -> None:
    registry = _registry_with(tmp_path, b"w")
    with pytest.raises(ScenarioError, match=r"v1 .*yolo_v1\.mar.*make demo"):
        weights_of("1", registry, tmp_path / "store", tmp_path)
