"""Shared by the readers that convert with supervision's ``DetectionDataset`` (YOLO, COCO, VOC).

supervision loads a whole folder and stops at the first bad file, while the import reports
every problem. So each reader looks over its files first, and supervision is handed a *view*:
a temporary folder of symbolic links to the files it can load. What was left out is reported
by the reader (a malformed label) or by validation (an unreadable image, still listed with no
boxes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yoloserve.datasets.records import SourceBox
from yoloserve.datasets.validate import image_size
from yoloserve.errors import InputError


def readable(path: Path) -> bool:
    """Whether the image's header decodes (validation says why not, later)."""
    try:
        image_size(path)
    except (InputError, OSError):
        return False
    return True


def link_view(files: list[Path], folder: Path) -> dict[str, Path]:
    """Symbolic links to ``files`` in ``folder`` (made); view path -> original path."""
    folder.mkdir(parents=True, exist_ok=True)
    originals: dict[str, Path] = {}
    for file in files:
        link = folder / file.name
        os.symlink(file.resolve(), link)
        originals[str(link)] = file
    return originals


def boxes_of(detections: Any, classes: list[str]) -> list[SourceBox]:
    """supervision ``Detections`` as our boxes (names by ``class_id`` into ``classes``)."""
    return [
        SourceBox((float(x1), float(y1), float(x2), float(y2)), classes[int(cls)])
        for (x1, y1, x2, y2), cls in zip(detections.xyxy, detections.class_id, strict=True)
    ]


def unknown_name(index: int) -> str:
    """What a class index outside the declared names is called in the report."""
    return f"<undeclared class {index}>"
