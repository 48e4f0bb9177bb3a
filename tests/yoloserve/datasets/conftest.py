"""A small labelled dataset of real photos and drawn shapes, and helpers to read imports back."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloserve.training.dataset import render_image

CLASSES = ["circle", "square", "triangle", "cat", "astronaut"]
# Hand-placed integer boxes on scikit-image's photos (VOC stores integers, so every format
# can carry them exactly).
_PHOTOS = {"chelsea": [(140, 20, 330, 290, "cat")],
           "astronaut": [(150, 20, 340, 230, "astronaut"), (10, 300, 80, 400, "circle")],
           "coffee": [], "rocket": [(200, 40, 320, 420, "triangle")]}


@pytest.fixture(scope="session")
def truth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[tuple[float, ...],
                                                                             str]]]:
    """Image files -> their boxes: 4 photos (one a background image) and 6 shape images."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("truth")
    out: dict[str, list[tuple[tuple[float, ...], str]]] = {}
    for name, boxes in _PHOTOS.items():
        array = getattr(skdata, name)()
        path = folder / f"{name}.png"
        Image.fromarray(np.asarray(array)[..., :3]).save(path)
        out[str(path)] = [((x1, y1, x2, y2), c) for x1, y1, x2, y2, c in boxes]
    rng = random.Random(7)
    for k in range(6):
        image, shapes = render_image(rng)
        path = folder / f"shapes_{k}.png"
        image.save(path)
        out[str(path)] = [(tuple(float(round(v)) for v in s.xyxy), s.name) for s in shapes]
    return out


def read_back(folder: Path) -> dict[str, list[tuple[tuple[float, ...], str]]]:
    """An imported dataset's boxes in pixels by image stem, from its YOLO labels."""
    import yaml

    names = yaml.safe_load((folder / "data.yaml").read_text())["names"]
    out = {}
    for image in sorted((folder / "images").glob("*/*")):
        label = folder / "labels" / image.parent.name / f"{image.stem}.txt"
        with Image.open(image) as opened:
            width, height = opened.size
        boxes = []
        for line in label.read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            x, y, bw, bh = (float(cx) * width, float(cy) * height, float(w) * width,
                            float(h) * height)
            boxes.append(((x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2), names[int(cls)]))
        out[image.stem] = sorted(boxes, key=lambda b: (b[1], b[0]))
    return out


def assert_same_boxes(got: dict, want: dict, tol: float = 0.5) -> None:
    """Same images, and per image the same names with coordinates within ``tol`` pixels."""
    assert sorted(got) == sorted(want)
    for stem in want:
        assert [n for _, n in got[stem]] == [n for _, n in want[stem]], stem
        for (a, _), (b, _) in zip(got[stem], want[stem], strict=True):
            assert np.allclose(a, b, atol=tol), (stem, a, b)
