"""COCO detection JSON, converted with supervision's ``DetectionDataset.from_coco``.

``SRC`` is one annotation file, or a folder of them: ``*.json`` in it or in ``annotations/``
(one per split, the split read from the file name: ``instances_train2017.json`` is ``train``),
or Roboflow's ``<split>/_annotations.coco.json``. ``file_name`` is relative to ``--images``,
else to ``images/`` beside the file, else to the file's folder.

Before supervision reads a file, its annotations are looked over: a ``category_id`` that no
category declares gets a placeholder category (validation reports it as an undeclared class),
a box with no width or height and an annotation of an unknown image are problems and are left
out (supervision raises on the first of them).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from yoloserve.datasets.formats.base import DatasetReader, ReadOptions, images_dir_for
from yoloserve.datasets.formats.supervised import boxes_of, unknown_name
from yoloserve.datasets.records import Problem, SourceDataset, SourceImage, split_of
from yoloserve.datasets.validate import UNREADABLE_ANNOTATION, ZERO_AREA


def _annotation_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src} does not exist")
    files = sorted(src.glob("*.json")) + sorted((src / "annotations").glob("*.json"))
    files += sorted(src.glob("*/_annotations.coco.json"))
    if not files:
        raise FileNotFoundError(f"{src}: no COCO *.json file")
    return files


def _split(file: Path, several: bool) -> str | None:
    if not several:
        return None
    return split_of(file.parent.name if file.name == "_annotations.coco.json" else file.stem)


class CocoReader(DatasetReader):
    """COCO object-detection annotation files."""

    name = "coco"

    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        files = _annotation_files(src)
        images: list[SourceImage] = []
        problems: list[Problem] = []
        classes: list[str] = list(options.classes or [])
        for file in files:
            try:
                data = json.loads(file.read_text())
                categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(Problem(UNREADABLE_ANNOTATION, str(file), f"not COCO JSON: {exc}"))
                continue
            if not options.classes:
                classes += [n for _, n in sorted(categories.items()) if n not in classes]
            split = _split(file, len(files) > 1)
            images += self._convert(file, data, categories, split,
                                    images_dir_for(file, options), problems)
        return SourceDataset(classes, images, problems)

    def _convert(self, file: Path, data: dict[str, Any], categories: dict[int, str],
                 split: str | None, images_dir: Path,
                 problems: list[Problem]) -> list[SourceImage]:
        import supervision as sv  # the ml extra's; the gateway never imports a reader

        image_ids = {img["id"] for img in data.get("images", [])}
        kept = []
        for ann in data.get("annotations", []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            where = f"annotation {ann.get('id', '?')} of image {ann.get('image_id')}"
            if ann.get("image_id") not in image_ids:
                problems.append(Problem(UNREADABLE_ANNOTATION, str(file),
                                        f"{where}: no image has this id"))
            elif w <= 0 or h <= 0:
                problems.append(Problem(ZERO_AREA, str(file),
                                        f"{where}: bbox {ann['bbox']} has no area"))
            else:
                cat = int(ann["category_id"])
                if cat not in categories:
                    categories[cat] = unknown_name(cat)
                # Boxes only: supervision would otherwise read segmentation into masks.
                kept.append({k: v for k, v in ann.items() if k != "segmentation"})
        patched = {**data, "annotations": kept,
                   "categories": [{"id": k, "name": v} for k, v in sorted(categories.items())]}
        with tempfile.TemporaryDirectory(prefix="coco-view-") as tmp:
            patched_file = Path(tmp) / "annotations.json"
            patched_file.write_text(json.dumps(patched))
            dataset = sv.DetectionDataset.from_coco(
                images_directory_path=str(images_dir), annotations_path=str(patched_file))
        declared = {img["file_name"]: (int(img["width"]), int(img["height"]))
                    for img in data.get("images", [])}
        out = []
        for path in dataset.image_paths:
            relative = Path(path).relative_to(images_dir).as_posix()
            out.append(SourceImage(Path(path), boxes_of(dataset.annotations[path],
                                                        dataset.classes),
                                   split, file, declared.get(relative)))
        return out
