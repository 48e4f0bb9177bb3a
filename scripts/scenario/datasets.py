"""The shifted data: three seeded splits of shapes on photos, and their labels in pixels.

``prod`` is sent as feedback before the retrain, ``after`` once the new version serves, and
``test`` is never sent: both versions are scored on it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from scripts.scenario.output import progress
from yoloserve.training.dataset import CLASSES, write_data_yaml, write_split

# Splits of the shifted set: sent before the retrain, sent after it, never sent.
PROD, AFTER, TEST = "prod", "after", "test"

#: A true box: pixel ``[x1, y1, x2, y2]`` and the class name.
Box = tuple[list[float], str]


@dataclass(frozen=True)
class ShiftedSets:
    """The generated folders: ``images/<split>``, ``labels/<split>``, and the eval ``data.yaml``."""

    root: Path
    data_yaml: Path

    def images(self, split: str) -> list[Path]:
        return sorted((self.root / "images" / split).glob("*.jpg"))


def split_seed(seed: int, split: str) -> int:
    """Seed of one split; far from the training set's (``seed * 1000 + 0..2``), so disjoint."""
    return 7_000_000 + seed * 10 + (PROD, AFTER, TEST).index(split)


def generate_sets(
    root: Path, n_prod: int, n_after: int, n_test: int, seed: int, opacity: float
) -> ShiftedSets:
    """Write the three splits afresh (seeded: the same options give the same images)."""
    for sub in ("images", "labels"):
        shutil.rmtree(root / sub, ignore_errors=True)
    splits = ((PROD, n_prod), (AFTER, n_after), (TEST, n_test))
    with progress() as bar:
        task = bar.add_task("generating shifted images", total=n_prod + n_after + n_test)
        for split, n in splits:
            write_split(
                root, split, n, split_seed(seed, split), background="photo",
                opacity=opacity, progress=lambda k: bar.advance(task, k),
            )
    # Ultralytics wants train and val keys; evaluation reads only `test` (the held-out split).
    data_yaml = write_data_yaml(
        root, ("train", "val", "test"), folders={"train": PROD, "val": TEST}
    )
    return ShiftedSets(root, data_yaml)


def read_label(image: Path) -> list[Box]:
    """The true boxes of a generated image (YOLO label -> pixel xyxy and class name)."""
    from PIL import Image

    label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
    with Image.open(image) as img:
        width, height = img.size
    boxes: list[Box] = []
    for line in label.read_text().split("\n"):
        if not line.strip():
            continue
        cls, cx, cy, w, h = line.split()
        x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        xyxy = [round(v, 2) for v in (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)]
        boxes.append((xyxy, CLASSES[int(cls)]))
    return boxes
