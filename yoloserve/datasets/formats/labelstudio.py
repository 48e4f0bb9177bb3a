"""Label Studio's JSON export, read by a small reader of its documented task format.

Why not label-studio-sdk's converter: it drags a large dependency tree (the SDK, its HTTP
client stack, pandas, ...) into the trainer image for ~40 lines of arithmetic on a stable,
documented format (labelstud.io/guide/export.html#Label-Studio-JSON-format-of-annotated-tasks).

``SRC`` is the exported JSON file (a list of tasks), or a folder with one. Per task: the image
in ``data.image`` (a path or URL; matched by its file name in ``--images``, else ``images/``
beside the file, with Label Studio's upload prefix ``<8 hex>-`` stripped when the plain name is
not there), boxes in the first annotation that was not cancelled, results of type
``rectanglelabels`` with ``x, y, width, height`` in percent of ``original_width/height``.
Label Studio exports declare no class list: ``--classes`` declares one, otherwise the labels
found are the classes. A rotated rectangle or another region (polygon, brush, keypoint,
ellipse) is a problem: a YOLO box cannot hold it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from yoloserve.datasets.formats.base import DatasetReader, ReadOptions, images_dir_for
from yoloserve.datasets.records import Problem, SourceBox, SourceDataset, SourceImage
from yoloserve.datasets.validate import MISSING_IMAGE, UNREADABLE_ANNOTATION

#: Label Studio's region results that are not axis-aligned boxes.
_OTHER_REGIONS = frozenset({"polygonlabels", "brushlabels", "keypointlabels", "ellipselabels",
                            "polygon", "brush", "keypoint", "ellipse"})
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def _json_file(src: Path) -> Path:
    if src.is_file():
        return src
    files = sorted(src.glob("*.json")) if src.is_dir() else []
    if len(files) != 1:
        raise FileNotFoundError(f"{src}: expected one Label Studio JSON export, found {files}")
    return files[0]


def _image_path(reference: str, images_dir: Path) -> Path:
    name = Path(unquote(urlparse(reference).path)).name
    plain = images_dir / name
    if plain.exists():
        return plain
    stripped = images_dir / _UPLOAD_PREFIX.sub("", name)
    return stripped if stripped.exists() else plain


class LabelStudioReader(DatasetReader):
    """Label Studio JSON (tasks with ``annotations[].result[]`` of ``rectanglelabels``)."""

    name = "labelstudio"

    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        file = _json_file(src)
        images_dir = images_dir_for(file, options)
        problems: list[Problem] = []
        try:
            tasks = json.loads(file.read_text())
            if not isinstance(tasks, list):
                raise ValueError("the export is not a list of tasks")
        except (OSError, ValueError) as exc:
            problems.append(Problem(UNREADABLE_ANNOTATION, str(file), str(exc)))
            return SourceDataset(list(options.classes or []), [], problems)
        classes: list[str] = list(options.classes or [])
        images: list[SourceImage] = []
        for n, task in enumerate(tasks):
            where = f"task {task.get('id', n)}"
            reference = (task.get("data") or {}).get("image")
            if not reference:
                problems.append(Problem(MISSING_IMAGE, str(file), f"{where}: no data.image"))
                continue
            boxes = self._boxes(task, where, str(file), problems)
            if not options.classes:
                classes += [b.name for b in boxes if b.name not in classes]
            images.append(SourceImage(_image_path(str(reference), images_dir), boxes, None, file))
        return SourceDataset(classes, images, problems)

    @staticmethod
    def _boxes(task: dict[str, Any], where: str, file: str,
               problems: list[Problem]) -> list[SourceBox]:
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        boxes: list[SourceBox] = []
        for result in (done[0].get("result") or []) if done else []:
            kind = str(result.get("type", ""))
            if kind in _OTHER_REGIONS:
                # A region a YOLO box cannot hold: refused like CVAT's polygons, not dropped.
                problems.append(Problem(UNREADABLE_ANNOTATION, file,
                                        f"{where}: result {result.get('id')} is a {kind} region, "
                                        "not a box"))
                continue
            if kind != "rectanglelabels":
                continue  # choices, text areas...: not regions
            value = result.get("value") or {}
            try:
                width, height = float(result["original_width"]), float(result["original_height"])
                x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
                w, h = float(value["width"]) * width / 100, float(value["height"]) * height / 100
                name = str(value["rectanglelabels"][0])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                problems.append(Problem(UNREADABLE_ANNOTATION, file,
                                        f"{where}: result {result.get('id')}: missing {exc}"))
                continue
            if float(value.get("rotation") or 0) != 0:
                problems.append(Problem(UNREADABLE_ANNOTATION, file,
                                        f"{where}: result {result.get('id')} is rotated"))
                continue
            boxes.append(SourceBox((x, y, x + w, y + h), name))
        return boxes
