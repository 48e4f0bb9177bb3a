"""Import a labelled dataset: read, split, validate, write the YOLO layout, record it.

Nothing half-imported is left behind: validation runs before any file is written; the folder
is built beside the target (``datasets/.<name>.importing-<id>``) and renamed into place at the
end; the store row is written last, and if that fails the folder is taken back (a replaced
dataset is restored). A failed import leaves no folder and no row.

Example:
    >>> result = import_dataset(Path("~/exports/pets"), "coco", "pets", store, paths.DATA_DIR)
    >>> result.counts["train"]
    {'images': 800, 'boxes': 2113}
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from yoloserve.boxes import yolo_label_line
from yoloserve.datasets import catalog
from yoloserve.datasets.formats.base import ReadOptions
from yoloserve.datasets.formats.factory import reader_for
from yoloserve.datasets.records import SPLITS, SourceDataset
from yoloserve.datasets.validate import Size, validate
from yoloserve.errors import DatasetExists, DatasetInvalid, InvalidParameter
from yoloserve.store.engine import Store

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# (phase, total) -> a callback advanced by 1 per image; phases "validating" and "writing".
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class SplitPlan:
    """How images get their split when the source has none: seeded fractions."""

    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise InvalidParameter("val and test fractions must be in [0, 1) and sum below 1")


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: the store's record, the folder and how long it took."""

    record: catalog.DatasetRecord
    folder: Path
    seconds: float


def assign_splits(source: SourceDataset, plan: SplitPlan) -> tuple[list[str], set[str]]:
    """Each image's split, and the splits that must not be empty.

    The source's own split wins when it has one (an image it leaves out goes to train);
    otherwise a seeded shuffle of the images (sorted by path, so the order the files were
    listed in does not matter) takes ``plan.val`` and ``plan.test`` of them.
    """
    if source.has_splits:
        assignment = [image.split or "train" for image in source.images]
        return assignment, {"train", "val"} | set(assignment)
    order = sorted(range(len(source.images)), key=lambda k: str(source.images[k].path))
    random.Random(plan.seed).shuffle(order)
    n_val = round(len(order) * plan.val)
    n_test = round(len(order) * plan.test)
    assignment = ["train"] * len(order)
    for rank, k in enumerate(order):
        if rank < n_val:
            assignment[k] = "val"
        elif rank < n_val + n_test:
            assignment[k] = "test"
    expected = {"train", "val"} | ({"test"} if plan.test > 0 else set())
    return assignment, expected


def import_dataset(
    src: Path,
    format_name: str,
    name: str,
    store: Store,
    data_dir: Path,
    *,
    options: ReadOptions | None = None,
    plan: SplitPlan | None = None,
    replace: bool = False,
    progress: ProgressFactory | None = None,
) -> ImportResult:
    """Validate ``src`` and import it as ``<data_dir>/datasets/<name>/``, recorded in the store.

    Args:
        src: the source file or folder (what its format reads, ``formats/<format>.py``).
        format_name: ``yolo``, ``coco``, ``voc``, ``labelstudio`` or ``cvat``.
        name: the dataset's name (letters, digits, ``_.-``).
        store: where it is recorded.
        data_dir: the data root.
        options: declared classes, images folder.
        plan: the split when the source has none.
        replace: replace a dataset of the same name instead of refusing.
        progress: makes a per-image callback for each phase.

    Returns:
        The record (``is_reference`` False: ``catalog.set_reference`` after ``ref_data.csv``).

    Raises:
        DatasetInvalid: validation failed; ``problems`` has every problem.
        DatasetExists: ``name`` exists and ``replace`` is False.
        InvalidParameter: a bad name or split fractions.
        FileNotFoundError: the source, or a file its format requires, is missing.
        ValueError: an unknown format.
    """
    started = time.perf_counter()
    if not _NAME.fullmatch(name):
        raise InvalidParameter(f"dataset name {name!r}: letters, digits, '_', '.', '-' only")
    target = catalog.dataset_dir(data_dir, name)
    if not replace and (catalog.get(store, name) is not None or target.exists()):
        raise DatasetExists(f"dataset {name!r} exists; import with --replace to replace it")
    reader = reader_for(format_name)
    source = reader.read(Path(src), options or ReadOptions())
    assignment, expected = assign_splits(source, plan or SplitPlan())
    tick = progress("validating", len(source.images)) if progress else None
    problems, sizes = validate(source, assignment, expected, tick)
    if problems:
        shown = "; ".join(f"{p.kind} {p.file}: {p.detail}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DatasetInvalid(f"{len(problems)} problem(s) in {src}: {shown}{more}", problems)

    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.parent / f".{name}.importing-{uuid.uuid4().hex[:8]}"
    try:
        tick = progress("writing", len(source.images)) if progress else None
        counts = _write(building, source, assignment, sizes, tick)
        _write_yaml(building, target, sorted(expected, key=SPLITS.index), source.classes)
        sha = _write_manifest(building)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    record = catalog.DatasetRecord(name, format_name, str(Path(src).resolve()),
                                   list(source.classes), counts, sha, datetime.now(UTC))
    _install(building, target, lambda: catalog.save(store, record))
    return ImportResult(record, target, time.perf_counter() - started)


def _write(folder: Path, source: SourceDataset, assignment: list[str],
           sizes: list[Size | None], tick: Callable[[int], None] | None) -> dict[str, dict[str,
                                                                                     int]]:
    counts = {split: {"images": 0, "boxes": 0} for split in sorted(set(assignment))}
    index = {name: k for k, name in enumerate(source.classes)}
    for split in counts:
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
    for image, split, size in zip(source.images, assignment, sizes, strict=True):
        assert size is not None  # validation refused unreadable images
        shutil.copyfile(image.path, folder / "images" / split / image.path.name)
        lines = [yolo_label_line(index[b.name], b.xyxy, *size) + "\n" for b in image.boxes]
        (folder / "labels" / split / f"{image.path.stem}.txt").write_text("".join(lines))
        counts[split]["images"] += 1
        counts[split]["boxes"] += len(lines)
        if tick:
            tick(1)
    return counts


def _write_yaml(folder: Path, target: Path, splits: list[str], classes: list[str]) -> None:
    # The final folder's absolute path: Ultralytics resolves a relative one against its cwd.
    data = {"path": str(target.resolve()), **{s: f"images/{s}" for s in splits},
            "names": dict(enumerate(classes))}
    (folder / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _write_manifest(folder: Path) -> str:
    """Write ``manifest.json`` (every file's sha256) and return the manifest's own sha256."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    payload = json.dumps({"files": files}, indent=1, sort_keys=True).encode()
    (folder / "manifest.json").write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def _install(building: Path, target: Path, commit: Callable[[], None]) -> None:
    """Rename ``building`` to ``target`` and run ``commit``; on failure undo both."""
    old = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:8]}"
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(building, target)
        commit()
    except BaseException:
        shutil.rmtree(target if target.exists() else building, ignore_errors=True)
        if had_old:
            os.replace(old, target)
        shutil.rmtree(building, ignore_errors=True)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
