"""The embedder artifact (yoloserve.embeddings.embedder): contract, determinism, one code path for
ref and prod rows, sensitivity to a shift of the image domain."""

from __future__ import annotations

import csv
import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import pytest

from scripts.build_ref_data import build_ref_data, iter_labelled
from yoloserve.embeddings.embedder import DEFAULT_PATH, Embedder
from yoloserve.feedback.export import ProdCsvExporter
from yoloserve.feedback.ledger import FeedbackLedger
from yoloserve.feedback.recorder import FeedbackRecorder
from yoloserve.store.engine import Store
from yoloserve.training.dataset import iter_images, write_data_yaml, write_split


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The committed artifact: the space production rows are compared in."""
    return Embedder.load()


def test_committed_artifact(embedder: Embedder) -> None:
    meta = json.loads(DEFAULT_PATH.with_suffix(".json").read_text())
    assert 16 <= embedder.dim <= 32
    assert embedder.version == meta["version"]
    assert embedder.version.startswith("cropdesc-v1-")
    assert {"version", "dim", "fitted_on", "params", "n_boxes"} <= meta.keys()
    assert DEFAULT_PATH.stat().st_size + DEFAULT_PATH.with_suffix(".json").stat().st_size < 100_000


def test_embed_shape_dtype_and_repeatability(embedder: Embedder, scene: tuple) -> None:
    image, boxes = scene
    first = embedder.embed(image, boxes)
    assert first.shape == (len(boxes), embedder.dim)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    assert first.tobytes() == embedder.embed(image.copy(), list(boxes)).tobytes()
    assert first.tobytes() == Embedder.load().embed(image, boxes).tobytes()


def test_batch_rows_equal_single_box_calls(embedder: Embedder, scene: tuple) -> None:
    """Vectorised over boxes, without batch effects: 300 boxes span two internal chunks."""
    image, boxes = scene
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-8, 8, size=(300, 4))
    many = np.array([boxes[i % len(boxes)] for i in range(300)]) + jitter
    batch = embedder.embed(image, many)
    singles = np.concatenate([embedder.embed(image, [b]) for b in many[[0, 1, 255, 256, 299]]])
    assert batch[[0, 1, 255, 256, 299]].tobytes() == singles.tobytes()
    assert len({row.tobytes() for row in batch}) == 300


def test_empty_degenerate_and_outside_boxes(embedder: Embedder, scene: tuple) -> None:
    image, _ = scene
    h, w = image.shape[:2]
    assert embedder.embed(image, []).shape == (0, embedder.dim)
    odd = [[5, 5, 5, 5], [-50, -50, 10, 10], [w - 3, h - 3, w + 100, h + 100], [w + 5, 0, w + 9, 9],
           [30, 40, 10, 20]]
    out = embedder.embed(image, odd)
    assert out.shape == (5, embedder.dim)
    assert np.isfinite(out).all()
    # Reversed corners describe the same box.
    assert out[4].tobytes() == embedder.embed(image, [[10, 20, 30, 40]])[0].tobytes()


@pytest.mark.parametrize(
    ("image", "boxes", "exception"),
    [
        (np.zeros((20, 30, 3), np.uint8), [[1, 2, 10, 12]], nullcontext()),
        (np.zeros((1, 1, 3), np.uint8), [[0, 0, 1, 1]], nullcontext()),
        (np.zeros((20, 30), np.uint8), [[1, 2, 10, 12]], pytest.raises(ValueError)),
        (np.zeros((20, 30, 4), np.uint8), [[1, 2, 10, 12]], pytest.raises(ValueError)),
        (np.zeros((20, 30, 3), np.float32), [[1, 2, 10, 12]], pytest.raises(ValueError)),
        (np.zeros((20, 30, 3), np.uint8), [[1, 2, 10]], pytest.raises(ValueError)),
        (np.zeros((20, 30, 3), np.uint8), [[1, 2, float("inf"), 12]], pytest.raises(ValueError)),
    ],
)
def test_input_validation(
    embedder: Embedder, image: np.ndarray, boxes: list, exception: AbstractContextManager[object]
) -> None:
    with exception:
        assert np.isfinite(embedder.embed(image, boxes)).all()


def test_load_refuses_mismatched_or_foreign_artifacts(tmp_path: Path, embedder: Embedder) -> None:
    path = embedder.save(tmp_path / "e.npz")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": "cropdesc-v1-0000000000"}))
    with pytest.raises(ValueError, match="does not match"):
        Embedder.load(path)
    meta_path.write_text(json.dumps({**meta, "descriptor_version": 99}))
    with pytest.raises(ValueError, match="refit"):
        Embedder.load(path)
    with pytest.raises(FileNotFoundError):
        Embedder.load(tmp_path / "missing.npz")


def _emb_columns(path: Path) -> tuple[list[list[str]], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [[r[k] for k in r if k.startswith("emb_")] for r in rows], [r["target"] for r in rows]


def test_ref_and_prod_paths_write_identical_vectors(tmp_path: Path, embedder: Embedder) -> None:
    """The same box gives the same CSV text via build_ref_data and via FeedbackRecorder."""
    root = tmp_path / "ds"
    write_split(root, "train", 4, seed=11)
    write_data_yaml(root, splits=("train",))
    ref_csv = tmp_path / "ref_data.csv"
    build_ref_data(root, ref_csv, embedder)

    store = Store.sqlite(tmp_path / "yoloserve.db")
    recorder = FeedbackRecorder(tmp_path / "data", embedder, FeedbackLedger(store))
    images = sorted((root / "images" / "train").glob("*.jpg"))
    for image_path, (_, boxes) in zip(images, iter_labelled(root, "train"), strict=True):
        recorder.record(image_path.read_bytes(), boxes, [], "1", None,
                        ["circle", "square", "triangle"])

    ref_vectors, ref_targets = _emb_columns(ref_csv)
    # Through the store and its export: the CSV text is still the float32 text of the ref path.
    ProdCsvExporter(store, tmp_path / "prod_data.csv").export()
    prod_vectors, prod_targets = _emb_columns(tmp_path / "prod_data.csv")
    assert len(ref_vectors) == len(prod_vectors) > 4
    assert ref_targets == prod_targets
    assert ref_vectors == prod_vectors


def _domain_auc(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=folds, scoring="roc_auc")
    return float(scores.mean())


def _embed_dataset(embedder: Embedder, n: int, seed: int, background: str) -> np.ndarray:
    rows = [embedder.embed(np.asarray(img), [s.xyxy for s in shapes])
            for img, shapes in iter_images(n, seed, background)]  # type: ignore[arg-type]
    return np.concatenate(rows)


def test_real_photo_backgrounds_are_told_apart(embedder: Embedder) -> None:
    """Domain-classifier two-sample test: same shapes, synthetic vs photo backgrounds."""
    synthetic = _embed_dataset(embedder, 50, seed=4242, background="synthetic")
    photo = _embed_dataset(embedder, 50, seed=4242, background="photo")
    other_synthetic = _embed_dataset(embedder, 50, seed=777, background="synthetic")
    shift_auc = _domain_auc(synthetic, photo)
    null_auc = _domain_auc(synthetic, other_synthetic)
    assert shift_auc > 0.85, shift_auc
    assert null_auc < 0.7, null_auc
