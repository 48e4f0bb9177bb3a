"""Feedback recording (yoloserve.feedback.recorder): files for retraining, rows, domain errors."""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloserve.embeddings.embedder import Embedder
from yoloserve.errors import (
    InvalidImage,
    InvalidLabels,
    UnsupportedImageFormat,
    YoloServeError,
)
from yoloserve.feedback.export import ProdCsvExporter
from yoloserve.feedback.ledger import FeedbackLedger
from yoloserve.feedback.matching import BACKGROUND, MISSED
from yoloserve.feedback.recorder import FeedbackRecorder, UnknownClass
from yoloserve.feedback.store import CsvSchemaError, prod_header
from yoloserve.images import decode_array
from yoloserve.store.engine import Store
from yoloserve.training.dataset import CLASSES, iter_images

NAMES = list(CLASSES)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="module")
def jpeg() -> tuple[bytes, list]:
    img, shapes = next(iter_images(1, seed=21))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), [(s.xyxy, s.name) for s in shapes]


@pytest.fixture()
def recorder(tmp_path: Path, embedder: Embedder) -> FeedbackRecorder:
    ledger = FeedbackLedger(Store.sqlite(tmp_path / "yoloserve.db"))
    return FeedbackRecorder(tmp_path, embedder, ledger, export_path=tmp_path / "prod_data.csv")


def _rows(recorder: FeedbackRecorder) -> list[dict[str, str]]:
    """The committed rows, as the export writes them to prod_data.csv."""
    assert recorder.export_path is not None
    ProdCsvExporter(recorder.ledger.store, recorder.export_path).export()
    if not recorder.export_path.exists():
        return []
    with open(recorder.export_path, newline="") as f:
        return list(csv.DictReader(f))


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "feedback").rglob("*") if p.is_file())


def _png(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    arr = np.random.default_rng(0).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_record_writes_files_then_rows(
    recorder: FeedbackRecorder, jpeg: tuple[bytes, list], embedder: Embedder, tmp_path: Path
) -> None:
    data, gt = jpeg
    (box0, name0) = gt[0]
    wrong = next(n for n in NAMES if n != name0)
    predicted = [(box0, wrong, 0.9), ((1.0, 1.0, 9.0, 9.0), "circle", 0.3)]
    result = recorder.record(data, gt, predicted, "3", "req-1", NAMES)

    assert result.rows_written == len(gt) + 1
    assert result.prod_rows_total == result.rows_written
    image_path = tmp_path / "feedback" / "images" / f"{result.feedback_id}.jpg"
    label_path = tmp_path / "feedback" / "labels" / f"{result.feedback_id}.txt"
    assert image_path.read_bytes() == data
    labels = [line.split() for line in label_path.read_text().splitlines()]
    assert [int(p[0]) for p in labels] == [NAMES.index(n) for _, n in gt]
    assert all(0.0 <= float(v) <= 1.0 for p in labels for v in p[1:])

    rows = _rows(recorder)
    assert list(rows[0]) == prod_header(embedder.dim)
    assert [(r["target"], r["prediction"]) for r in rows] == (
        [(name0, wrong)] + [(n, MISSED) for _, n in gt[1:]] + [(BACKGROUND, "circle")]
    )
    assert {r["feedback_id"] for r in rows} == {result.feedback_id}
    assert {(r["request_id"], r["model_version"]) for r in rows} == {("req-1", "3")}
    assert {r["image"] for r in rows} == {f"feedback/images/{result.feedback_id}.jpg"}
    assert all(r["timestamp"].endswith("+00:00") for r in rows)

    # GT rows embed the GT box, background rows the predicted box, through the one decode path.
    boxes = [b for b, _ in gt] + [(1.0, 1.0, 9.0, 9.0)]
    expected = embedder.embed(decode_array(data), boxes)
    got = np.array([[r[f"emb_{i}"] for i in range(embedder.dim)] for r in rows], dtype=np.float32)
    assert got.tobytes() == expected.tobytes()


def test_totals_accumulate_and_request_id_is_optional(recorder: FeedbackRecorder) -> None:
    png = _png()
    first = recorder.record(png, [((5, 5, 30, 30), "square")], [], "1", None, NAMES)
    second = recorder.record(png, [((5, 5, 30, 30), "circle"), ((40, 5, 60, 30), "square")], [],
                             "1", None, NAMES)
    assert (first.rows_written, first.prod_rows_total) == (1, 1)
    assert (second.rows_written, second.prod_rows_total) == (2, 3)
    assert first.feedback_id != second.feedback_id
    assert {r["request_id"] for r in _rows(recorder)} == {""}
    assert (recorder.data_dir / "feedback" / "images" / f"{first.feedback_id}.png").exists()


def test_nothing_to_detect_still_keeps_the_image(
    recorder: FeedbackRecorder, tmp_path: Path
) -> None:
    result = recorder.record(_png(fmt="BMP"), [], [], "1", "r", NAMES)
    assert (result.rows_written, result.prod_rows_total) == (0, 0)
    assert (tmp_path / "feedback" / "labels" / f"{result.feedback_id}.txt").read_text() == ""
    assert (tmp_path / "feedback" / "images" / f"{result.feedback_id}.bmp").exists()
    assert _rows(recorder) == []


def test_boxes_are_clipped_to_the_image(recorder: FeedbackRecorder, tmp_path: Path) -> None:
    result = recorder.record(_png(64, 48), [((-10, -10, 32, 100), "triangle")],
                             [((60, 40, 90, 90), "circle", 0.5), ((70, 0, 80, 10), "square", 0.2)],
                             "1", None, NAMES)
    label = (tmp_path / "feedback" / "labels" / f"{result.feedback_id}.txt").read_text().split()
    assert label == ["2", "0.250000", "0.500000", "0.500000", "1.000000"]
    # The prediction entirely outside the image is dropped; the partly outside one is kept.
    assert [(r["target"], r["prediction"]) for r in _rows(recorder)] == [
        ("triangle", MISSED), (BACKGROUND, "circle")]


@pytest.mark.parametrize(
    ("gt", "predicted", "request_id", "error"),
    [
        ([((1, 1, 20, 20), "hexagon")], [], None, UnknownClass),
        ([((1, 1, 20, 20), "__background__")], [], None, UnknownClass),
        ([((20, 1, 1, 20), "circle")], [], None, InvalidLabels),
        ([((1, 1, 1, 20), "circle")], [], None, InvalidLabels),
        ([((1, 1, float("nan"), 20), "circle")], [], None, InvalidLabels),
        ([((1, 1, 20), "circle")], [], None, InvalidLabels),
        ([((100, 100, 120, 120), "circle")], [], None, InvalidLabels),  # outside the image
        ([], [(("a", 1, 2, 3), "circle", 0.5)], None, InvalidLabels),
        ([], [], "two\nlines", InvalidLabels),
        ([], [], "x" * 201, InvalidLabels),
    ],
)
def test_invalid_labels_store_nothing(
    recorder: FeedbackRecorder,
    tmp_path: Path,
    gt: list,
    predicted: list,
    request_id: str | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error) as info:
        recorder.record(_png(64, 48), gt, predicted, "1", request_id, NAMES)
    assert isinstance(info.value, YoloServeError)
    assert _stored_files(tmp_path) == []
    assert recorder.ledger.total() == 0


def test_unknown_class_error_is_an_invalid_labels_error() -> None:
    assert issubclass(UnknownClass, InvalidLabels)
    assert UnknownClass("x").code == "unknown_class"


@pytest.mark.parametrize(
    ("data", "error"),
    [(b"definitely not an image", InvalidImage), (_png(fmt="GIF"), UnsupportedImageFormat)],
)
def test_bad_images(
    recorder: FeedbackRecorder, tmp_path: Path, data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        recorder.record(data, [], [], "1", None, NAMES)
    assert _stored_files(tmp_path) == []


def test_unacknowledged_feedback_leaves_no_files(
    tmp_path: Path, embedder: Embedder
) -> None:
    prod = tmp_path / "prod_data.csv"
    prod.write_text("some,other,header\n")
    ledger = FeedbackLedger(Store.sqlite(tmp_path / "yoloserve.db"))
    recorder = FeedbackRecorder(tmp_path, embedder, ledger, export_path=prod)
    with pytest.raises(CsvSchemaError):
        recorder.record(_png(), [((5, 5, 30, 30), "square")], [], "1", None, NAMES)
    assert _stored_files(tmp_path) == []
    assert prod.read_text() == "some,other,header\n"
    assert ledger.total() == 0


def test_the_export_must_fit_the_embedder(tmp_path: Path, embedder: Embedder) -> None:
    prod = tmp_path / "p.csv"
    prod.write_text(",".join(prod_header(3)) + "\n")
    ledger = FeedbackLedger(Store.sqlite(tmp_path / "yoloserve.db"))
    with pytest.raises(CsvSchemaError):
        FeedbackRecorder(tmp_path, embedder, ledger, export_path=prod).record(
            _png(), [((5, 5, 30, 30), "square")], [], "1", None, NAMES)
    recorder = FeedbackRecorder(tmp_path, embedder, ledger)
    with pytest.raises(ValueError):
        recorder.record(_png(), [], [], "1", None, [])


def test_concurrent_records_from_a_threadpool(
    recorder: FeedbackRecorder, jpeg: tuple[bytes, list], tmp_path: Path
) -> None:
    data, gt = jpeg
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: recorder.record(data, gt, [], "1", f"req-{i}", NAMES), range(24)))
    rows = _rows(recorder)
    assert len(rows) == 24 * len(gt) == recorder.ledger.total()
    assert len({r.feedback_id for r in results}) == 24
    assert sorted(r.prod_rows_total for r in results) == [len(gt) * k for k in range(1, 25)]
    assert {r["request_id"] for r in rows} == {f"req-{i}" for i in range(24)}
    assert len(list((tmp_path / "feedback" / "images").iterdir())) == 24
    assert len(list((tmp_path / "feedback" / "labels").iterdir())) == 24


def test_a_csv_that_appears_with_another_header_is_refused_after_good_feedback(
    tmp_path: Path, embedder: Embedder
) -> None:
    """The header is read again whenever the file is another one (the check is cached per
    file, as the exporter appends to it all the time)."""
    prod = tmp_path / "prod_data.csv"
    ledger = FeedbackLedger(Store.sqlite(tmp_path / "yoloserve.db"))
    recorder = FeedbackRecorder(tmp_path, embedder, ledger, export_path=prod)
    recorder.record(_png(), [((5, 5, 30, 30), "square")], [], "1", None, NAMES)
    other = tmp_path / "other.csv"
    other.write_text("some,other,header\n")
    os.replace(other, prod)
    with pytest.raises(CsvSchemaError):
        recorder.record(_png(), [((5, 5, 30, 30), "square")], [], "1", None, NAMES)
    assert ledger.total() == 1
