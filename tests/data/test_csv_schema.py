"""Schema checks on the CSVs the drift reports read: a freshly generated ref_data.csv, and the
repository's data/ref_data.csv and data/prod_data.csv when they have been built."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from scripts.build_ref_data import build_ref_data
from yoloserve import paths
from yoloserve.feedback.store import prod_header, ref_header
from yoloserve.training.dataset import CLASSES, write_data_yaml, write_split
from yoloserve.embeddings.embedder import Embedder
from yoloserve.feedback.matching import BACKGROUND, MISSED


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="module")
def generated_ref_csv(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_split(root, "train", 6, seed=99)
    write_data_yaml(root, splits=("train",))
    out = root / "ref_data.csv"
    build_ref_data(root, out, embedder)
    return out


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows, f"{path} is empty"
    return rows[0], rows[1:]


def _check_embeddings(header: list[str], rows: list[list[str]], dim: int) -> None:
    assert all(len(r) == len(header) for r in rows), "ragged rows"
    for r in rows:
        values = [float(v) for v in r[:dim]]
        assert all(math.isfinite(v) for v in values)
    # A column that never varies would carry no drift signal (and breaks some drift tests).
    if len(rows) > 1:
        assert all(len({r[i] for r in rows}) > 1 for i in range(dim))


def _ref_csvs() -> list[object]:
    repo_csv = paths.DATA_DIR / "ref_data.csv"
    return [
        pytest.param("generated", id="generated"),
        pytest.param(repo_csv, id="data/ref_data.csv", marks=pytest.mark.skipif(
            not repo_csv.exists(), reason="not built: python -m scripts.build_ref_data")),
    ]


@pytest.mark.parametrize("which", _ref_csvs())
def test_ref_data_schema(which: object, generated_ref_csv: Path, embedder: Embedder) -> None:
    path = generated_ref_csv if which == "generated" else Path(str(which))
    header, rows = _table(path)
    assert header == ref_header(embedder.dim)
    assert len(rows) > 0
    _check_embeddings(header, rows, embedder.dim)
    assert {r[-1] for r in rows} <= set(CLASSES)


@pytest.mark.skipif(not (paths.DATA_DIR / "prod_data.csv").exists(),
                    reason="no production feedback recorded yet")
def test_prod_data_schema(embedder: Embedder) -> None:
    header, rows = _table(paths.DATA_DIR / "prod_data.csv")
    assert header == prod_header(embedder.dim)
    _check_embeddings(header, rows, embedder.dim)
    col = {name: i for i, name in enumerate(header)}
    for r in rows:
        assert r[col["target"]] in {*CLASSES, BACKGROUND}
        assert r[col["prediction"]] in {*CLASSES, MISSED}
        assert r[col["feedback_id"]] and r[col["timestamp"]] and r[col["model_version"]]
        assert r[col["image"]].startswith("feedback/images/")
