"""YOLO (Ultralytics) folders, converted with supervision's ``DetectionDataset.from_yolo``.

Layouts read, with ``data.yaml`` (``names``) at the top:

- ``images/<split>/`` + ``labels/<split>/`` (Ultralytics), split ``train``, ``val``/``valid``,
  ``test``;
- ``<split>/images/`` + ``<split>/labels/`` (Roboflow's export);
- ``images/`` + ``labels/`` (no split: the importer makes one).

Before supervision sees a folder, every label file is read leniently: a class index beyond
``names`` is kept under a placeholder name (validation reports it as an undeclared class), a
label file whose image is missing and a malformed line are problems, and the file is left out
of supervision's view.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from yoloserve.datasets.formats.base import DatasetReader, ReadOptions, list_images
from yoloserve.datasets.formats.supervised import boxes_of, link_view, readable, unknown_name
from yoloserve.datasets.records import (
    SPLIT_ALIASES,
    Problem,
    SourceDataset,
    SourceImage,
)
from yoloserve.datasets.validate import MISSING_IMAGE, UNREADABLE_ANNOTATION


def _names(data_yaml: Path) -> list[str]:
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{data_yaml}: 'names' must be a list or a mapping of index to name")


def _layout(src: Path) -> list[tuple[str | None, Path, Path]]:
    """(split, images folder, labels folder) of each part of the source."""
    parts: list[tuple[str | None, Path, Path]] = []
    for alias, split in SPLIT_ALIASES.items():
        for images, labels in ((src / "images" / alias, src / "labels" / alias),
                               (src / alias / "images", src / alias / "labels")):
            if images.is_dir():
                parts.append((split, images, labels))
    if not parts and (src / "images").is_dir():
        parts.append((None, src / "images", src / "labels"))
    return parts


def _check_label(path: Path) -> tuple[str | None, int]:
    """(what is wrong with the file or None, the highest class index in it)."""
    highest = -1
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {exc}", highest
    for n, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = float(parts[0])
            [float(v) for v in parts[1:]]
        except ValueError:
            return f"line {n}: not numbers: {line!r}", highest
        if len(parts) < 5 or not cls.is_integer() or cls < 0:
            return f"line {n}: expected 'class cx cy w h' (class a whole number): {line!r}", highest
        highest = max(highest, int(cls))
    return None, highest


class YoloReader(DatasetReader):
    """Ultralytics YOLO folders with ``data.yaml``."""

    name = "yolo"

    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        import supervision as sv  # the ml extra's; the gateway never imports a reader

        data_yaml = src / "data.yaml"
        if not data_yaml.is_file():
            raise FileNotFoundError(f"{data_yaml} does not exist (YOLO datasets declare names)")
        declared = options.classes or _names(data_yaml)
        parts = _layout(src)
        if not parts:
            raise FileNotFoundError(f"{src}: no images/ or <split>/images/ folder")
        images: list[SourceImage] = []
        problems: list[Problem] = []
        for split, images_dir, labels_dir in parts:
            found = list_images(images_dir)
            stems = {p.stem for p in found}
            for label in sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []:
                if label.stem not in stems:
                    problems.append(Problem(MISSING_IMAGE, str(label),
                                            f"no image named {label.stem}.* in {images_dir}"))
            loadable: list[Path] = []
            highest = len(declared) - 1
            for image in found:
                label = labels_dir / f"{image.stem}.txt"
                wrong, top = _check_label(label) if label.exists() else (None, -1)
                if wrong:
                    problems.append(Problem(UNREADABLE_ANNOTATION, str(label), wrong))
                elif readable(image):
                    loadable.append(image)
                    highest = max(highest, top)
            names = declared + [unknown_name(k) for k in range(len(declared), highest + 1)]
            by_view = self._load(sv, loadable, labels_dir, names)
            for image in found:
                label = labels_dir / f"{image.stem}.txt"
                boxes = by_view.get(image, [])
                images.append(SourceImage(image, boxes, split,
                                          label if label.exists() else None))
        return SourceDataset(list(declared), images, problems)

    @staticmethod
    def _load(sv: object, files: list[Path], labels_dir: Path,
              names: list[str]) -> dict[Path, list]:
        if not files:
            return {}
        with tempfile.TemporaryDirectory(prefix="yolo-view-") as tmp:
            view = Path(tmp)
            originals = link_view(files, view / "images")
            (view / "labels").mkdir()
            for file in files:
                label = labels_dir / f"{file.stem}.txt"
                if label.exists():
                    (view / "labels" / label.name).symlink_to(label.resolve())
            (view / "data.yaml").write_text(yaml.safe_dump({"names": names}))
            dataset = sv.DetectionDataset.from_yolo(  # type: ignore[attr-defined]
                images_directory_path=str(view / "images"),
                annotations_directory_path=str(view / "labels"),
                data_yaml_path=str(view / "data.yaml"))
            return {originals[path]: boxes_of(dataset.annotations[path], dataset.classes)
                    for path in dataset.image_paths}
