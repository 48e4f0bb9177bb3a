"""Validate a source before anything is written: one report with every problem and its file.

Checks, whatever the format: each image exists and is a readable image (its header decodes),
each box lies inside its image (``BOX_TOLERANCE_PX`` of slack for rounding) and has an area,
each class name is declared, no two images land on the same file name, and no expected split
is empty. The readers add what only they can see (a label file whose image is missing, a
malformed annotation) as problems of their own.

Example:
    >>> problems, sizes = validate(source, ["train", "val"], expected={"train", "val"})
    >>> [p.kind for p in problems]
    []
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from yoloserve.datasets.records import Problem, SourceDataset
from yoloserve.errors import InputError
from yoloserve.images import inspect_image

BOX_TOLERANCE_PX = 0.5

MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
UNREADABLE_ANNOTATION = "unreadable_annotation"
BOX_OUTSIDE = "box_outside_image"
ZERO_AREA = "zero_area_box"
UNKNOWN_CLASS = "unknown_class"
DUPLICATE_NAME = "duplicate_name"
EMPTY_SPLIT = "empty_split"

Size = tuple[int, int]


def image_size(path: Path) -> Size:
    """``(width, height)`` from the image's header.

    Raises:
        FileNotFoundError: no such file.
        InputError: not a readable image of a supported format.
    """
    info = inspect_image(path.read_bytes())
    return info.width, info.height


def validate(
    source: SourceDataset,
    assignment: Sequence[str],
    expected: set[str],
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Problem], list[Size | None]]:
    """Every problem of ``source`` once its images are given their splits.

    Args:
        source: what the reader found (its own problems are included in the answer).
        assignment: the split of each image of ``source.images``, in order.
        expected: the splits that must not be empty.
        progress: called with 1 after each image.

    Returns:
        The problems, in source order, and each image's size (None when unreadable).
    """
    if len(assignment) != len(source.images):
        raise ValueError("one split per image is needed")
    problems = list(source.problems)
    sizes: list[Size | None] = []
    declared = set(source.classes)
    by_name: dict[str, list[str]] = defaultdict(list)
    for image in source.images:
        label = str(image.label_file or image.path)
        by_name[image.path.stem].append(str(image.path))
        size = _readable_size(image.path, problems)
        sizes.append(size)
        for k, box in enumerate(image.boxes):
            where = f"box {k} ({box.name})"
            if box.name not in declared:
                problems.append(Problem(UNKNOWN_CLASS, label,
                                        f"{where}: class {box.name!r} is not declared "
                                        f"(classes: {', '.join(source.classes) or 'none'})"))
            x1, y1, x2, y2 = box.xyxy
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                problems.append(Problem(ZERO_AREA, label, f"{where}: xyxy {_fmt(box.xyxy)} "
                                        "has no area"))
            elif size is not None and _outside(box.xyxy, size):
                problems.append(Problem(BOX_OUTSIDE, label, f"{where}: xyxy {_fmt(box.xyxy)} "
                                        f"is outside the {size[0]}x{size[1]} image"))
        if progress:
            progress(1)
    for stem, files in by_name.items():
        if len(files) > 1:
            # Labels are matched to images by stem, so a.jpg and a.png would share a.txt.
            problems.extend(Problem(DUPLICATE_NAME, f, f"{len(files)} images would be named "
                                    f"{stem!r}: {', '.join(files)}") for f in files)
    counts = {split: assignment.count(split) for split in expected}
    for split in sorted(expected):
        if counts[split] == 0:
            problems.append(Problem(EMPTY_SPLIT, split, f"split {split!r} has no image"))
    return problems, sizes


def _readable_size(path: Path, problems: list[Problem]) -> Size | None:
    try:
        return image_size(path)
    except FileNotFoundError:
        problems.append(Problem(MISSING_IMAGE, str(path), "the image file does not exist"))
    except (InputError, OSError) as exc:
        problems.append(Problem(UNREADABLE_IMAGE, str(path), f"not a readable image: {exc}"))
    return None


def _outside(xyxy: tuple[float, float, float, float], size: Size) -> bool:
    x1, y1, x2, y2 = xyxy
    width, height = size
    tol = BOX_TOLERANCE_PX
    return x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol


def _fmt(xyxy: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in xyxy) + "]"


def report_json(problems: Sequence[Problem]) -> str:
    """The report as JSON: ``{"ok": bool, "problems": [{"kind", "file", "detail"}], "counts"}``."""
    counts: dict[str, int] = defaultdict(int)
    for problem in problems:
        counts[problem.kind] += 1
    return json.dumps({"ok": not problems, "counts": dict(counts),
                       "problems": [asdict(p) for p in problems]}, indent=2) + "\n"
