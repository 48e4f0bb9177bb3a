"""Feedback recorded before a class change: found by its version, named by its version's
classes in an export, and left out of a retrain."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import yaml
from PIL import Image

from yoloserve.datasets.collected import label_classes, other_class_feedback
from yoloserve.datasets.export import export_feedback
from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackRowRecord

OLD = ["circle", "square", "triangle"]
NEW = ["ball", "crate"]
VERSIONS = {"1": OLD, "2": NEW, "3": []}


def _feedback(store: Store, data_dir: Path, rows: list[tuple[str, str, str]]) -> None:
    """(feedback_id, model_version, YOLO label) as the recorder leaves them."""
    (data_dir / "feedback" / "images").mkdir(parents=True)
    (data_dir / "feedback" / "labels").mkdir(parents=True)
    with store.write() as session:
        for k, (feedback_id, version, label) in enumerate(rows):
            Image.new("RGB", (100, 50)).save(data_dir / "feedback" / "images" /
                                             f"{feedback_id}.png")
            (data_dir / "feedback" / "labels" / f"{feedback_id}.txt").write_text(label)
            session.add(FeedbackRowRecord(
                id=k + 1, feedback_id=feedback_id, embedding=[0.0], target="x",
                prediction="x", timestamp="t", request_id="", model_version=version,
                image=f"feedback/images/{feedback_id}.png", created_at=datetime.now(UTC)))


def test_label_classes_are_the_versions_own_or_the_current() -> None:
    assert label_classes(VERSIONS, NEW, "1") == OLD
    assert label_classes(VERSIONS, NEW, "3") == NEW, "a record without classes: current ones"
    assert label_classes(VERSIONS, NEW, "99") == NEW


def test_feedback_of_other_classes_is_found_and_exported_by_its_names(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    _feedback(store, tmp_path / "data", [
        ("fb-old", "1", "2 0.5 0.5 0.2 0.2\n"),  # a triangle, index 2 of the old classes
        ("fb-new", "2", "1 0.5 0.5 0.4 0.4\n0 0.2 0.2 0.1 0.1\n"),
    ])
    assert other_class_feedback(store, VERSIONS, NEW) == {"fb-old"}
    assert other_class_feedback(store, {"1": OLD}, OLD) == set()

    export_feedback(store, tmp_path / "data", NEW, "yolo", tmp_path / "out.zip", VERSIONS)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = yaml.safe_load(archive.read("data.yaml"))["names"]
        old = archive.read("labels/fb-old.txt").decode()
        new = archive.read("labels/fb-new.txt").decode()
    assert names == {0: "ball", 1: "crate", 2: "circle", 3: "square", 4: "triangle"}
    assert old.split()[0] == "4", "still a triangle"
    assert [line.split()[0] for line in new.splitlines()] == ["1", "0"]
