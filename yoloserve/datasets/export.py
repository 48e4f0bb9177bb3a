"""Export the labels the platform collected (feedback, and review items labelled into feedback)
as a YOLO or COCO dataset, in a folder or a zip.

What was collected is read from the store (the feedback rows: which feedback ids exist and
their image file) and from ``<data_dir>/feedback/{images,labels}`` (the recorder's image and
YOLO label per feedback, class indices into the classes of its version, ``collected``). A
feedback whose files are gone (moved aside by hand) is skipped and counted. The layouts are the ones
``yoloserve.datasets.importer`` reads back without a split of their own:

- ``yolo``: ``data.yaml`` (``names``), ``images/<id>.<ext>``, ``labels/<id>.txt``;
- ``coco``: ``annotations.json`` (categories 1..N in class order), ``images/<id>.<ext>``.

Example:
    >>> export_feedback(store, paths.DATA_DIR, ["circle", "square"], "coco", Path("out.zip"))
    ExportResult(path=PosixPath('out.zip'), images=12, boxes=31, skipped=0)
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import yaml

from yoloserve.datasets.collected import Collected, collected, label_classes
from yoloserve.errors import NoLabelsCollected, UnsupportedExportFormat
from yoloserve.images import inspect_image
from yoloserve.store.engine import Store

ExportFormat = Literal["yolo", "coco"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds."""

    path: Path
    images: int
    boxes: int
    skipped: int


class _Sink(Protocol):
    def add(self, name: str, data: bytes) -> None: ...


class _FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class _ZipSink:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def add(self, name: str, data: bytes) -> None:
        # Images are compressed already; deflating them costs CPU for nothing.
        kind = zipfile.ZIP_STORED if not name.endswith((".txt", ".json", ".yaml")) \
            else zipfile.ZIP_DEFLATED
        self.archive.writestr(name, data, compress_type=kind)


def export_feedback(
    store: Store, data_dir: Path, classes: list[str], format_name: str, out: Path,
    versions: Mapping[str, list[str]] | None = None,
) -> ExportResult:
    """Write the collected labels as a ``format_name`` dataset to ``out`` (a ``.zip`` file, or
    a folder otherwise).

    Args:
        store: where the feedback rows are.
        data_dir: the data root holding ``feedback/``.
        classes: the registry's class names (a label's class index is into these).
        format_name: ``yolo`` or ``coco``.
        out: the zip file or folder to write.
        versions: each version's recorded classes: feedback of a version of other classes
            (before ``--replace-classes``) keeps its own names, appended after ``classes``.

    Raises:
        UnsupportedExportFormat: ``format_name`` is not one of ``EXPORT_FORMATS``.
        NoLabelsCollected: the store has no feedback yet.
    """
    if format_name not in EXPORT_FORMATS:
        raise UnsupportedExportFormat(
            f"format {format_name!r} is not one of {', '.join(EXPORT_FORMATS)}")
    items = list(collected(store, data_dir))
    if not items:
        raise NoLabelsCollected()
    names = {item.feedback_id: label_classes(versions or {}, classes, item.model_version)
             for item in items}
    union = list(dict.fromkeys([*classes, *(n for i in items for n in names[i.feedback_id])]))
    if out.suffix == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w") as archive:
            counts = _export(_ZipSink(archive), items, names, union, format_name)
    else:
        counts = _export(_FolderSink(out), items, names, union, format_name)
    return ExportResult(out, *counts)


def _remap(label: str, names: list[str], union: list[str]) -> str:
    """A YOLO label's indices from ``names`` to ``union`` (malformed lines dropped)."""
    lines = []
    for line in label.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit() and int(parts[0]) < len(names):
            lines.append(" ".join([str(union.index(names[int(parts[0])])), *parts[1:]]))
    return "".join(f"{line}\n" for line in lines)


def _export(sink: _Sink, items: list[Collected], names: Mapping[str, list[str]],
            classes: list[str], format_name: str) -> tuple[int, int, int]:
    images = boxes = skipped = 0
    coco: dict[str, Any] = {
        "images": [], "annotations": [],
        "categories": [{"id": k + 1, "name": n, "supercategory": "none"}
                       for k, n in enumerate(classes)]}
    for item in items:
        if not (item.image.is_file() and item.label.is_file()):
            skipped += 1
            continue
        data = item.image.read_bytes()
        name = f"{item.feedback_id}{item.image.suffix}"
        sink.add(f"images/{name}", data)
        label = _remap(item.label.read_text(), names[item.feedback_id], classes)
        images += 1
        boxes += sum(1 for line in label.splitlines() if line.strip())
        if format_name == "yolo":
            sink.add(f"labels/{item.feedback_id}.txt", label.encode())
            continue
        info = inspect_image(data)
        image_id = len(coco["images"]) + 1
        coco["images"].append({"id": image_id, "file_name": name,
                               "width": info.width, "height": info.height})
        for cls, x, y, w, h in _pixel_boxes(label, info.width, info.height):
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id,
                "category_id": cls + 1, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    if format_name == "yolo":
        sink.add("data.yaml", yaml.safe_dump({"names": dict(enumerate(classes))}).encode())
    else:
        sink.add("annotations.json", json.dumps(coco).encode())
    return images, boxes, skipped


def _pixel_boxes(label: str, width: int, height: int) -> list[tuple[int, float, float, float,
                                                                    float]]:
    """YOLO lines as (class, x, y, w, h) in pixels (COCO's bbox)."""
    out = []
    for line in label.splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        cx, cy, w, h = (float(v) for v in parts[1:])
        out.append((int(parts[0]), (cx - w / 2) * width, (cy - h / 2) * height,
                    w * width, h * height))
    return out
