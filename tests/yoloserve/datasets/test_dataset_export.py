"""Collected feedback exports as YOLO and COCO, and the export imports back to the same boxes."""

from __future__ import annotations

import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.yoloserve.datasets.conftest import CLASSES, assert_same_boxes, read_back
from yoloserve.boxes import yolo_label_line
from yoloserve.datasets.export import export_feedback
from yoloserve.datasets.importer import SplitPlan, import_dataset
from yoloserve.errors import NoLabelsCollected, UnsupportedExportFormat
from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackRowRecord

Truth = dict[str, list[tuple[tuple[float, ...], str]]]


def record_feedback(store: Store, data_dir: Path, truth: Truth) -> None:
    """What ``FeedbackRecorder`` leaves: image + YOLO label files, and rows in the store."""
    from PIL import Image

    images, labels = data_dir / "feedback" / "images", data_dir / "feedback" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    with store.write() as session:
        for k, (path, boxes) in enumerate(truth.items()):
            feedback_id = f"fb-{Path(path).stem}"
            shutil.copy(path, images / f"{feedback_id}.png")
            with Image.open(path) as image:
                size = image.size
            (labels / f"{feedback_id}.txt").write_text("".join(
                yolo_label_line(CLASSES.index(n), b, *size) + "\n" for b, n in boxes))
            session.add(FeedbackRowRecord(
                id=k + 1, feedback_id=feedback_id, embedding=[0.0], target="x", prediction="x",
                timestamp="t", request_id="", model_version="1",
                image=f"feedback/images/{feedback_id}.png", created_at=datetime.now(UTC)))


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_an_export_imports_back_to_the_same_boxes(fmt: str, truth: Truth,
                                                  tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    record_feedback(store, tmp_path / "data", truth)

    result = export_feedback(store, tmp_path / "data", CLASSES, fmt, tmp_path / "out.zip")
    assert (result.images, result.skipped) == (len(truth), 0)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    src = tmp_path / "unzipped" / ("annotations.json" if fmt == "coco" else "")
    imported = import_dataset(src, fmt, "back", store, tmp_path / "data",
                              plan=SplitPlan(val=0.2, test=0.1))

    want = {f"fb-{Path(p).stem}": sorted(b, key=lambda x: (x[1], x[0]))
            for p, b in truth.items()}
    assert_same_boxes(read_back(imported.folder), want)


def test_nothing_collected_and_an_unknown_format_are_domain_errors(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    with pytest.raises(NoLabelsCollected):
        export_feedback(store, tmp_path, CLASSES, "yolo", tmp_path / "o.zip")
    with pytest.raises(UnsupportedExportFormat):
        export_feedback(store, tmp_path, CLASSES, "voc", tmp_path / "o.zip")
