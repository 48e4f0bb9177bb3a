"""The synthetic detection set: seeded, valid YOLO labels that match what is drawn, disjoint
splits, and a data.yaml Ultralytics can read; the shifted images of the drift scenario
(translucent shapes, same labels) and the shipped synthetic set unchanged by that option."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from yoloserve.training.dataset import (
    CLASSES,
    generate_dataset,
    iter_images,
    render_image,
    write_data_yaml,
    yolo_label_lines,
)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_images_other_seed_other_images() -> None:
    a = [(np.asarray(img), shapes) for img, shapes in iter_images(3, seed=5)]
    b = [(np.asarray(img), shapes) for img, shapes in iter_images(3, seed=5)]
    c = [np.asarray(img) for img, _ in iter_images(3, seed=6)]
    for (img_a, shapes_a), (img_b, shapes_b) in zip(a, b, strict=True):
        assert np.array_equal(img_a, img_b) and shapes_a == shapes_b
    assert not any(
        x.shape == y.shape and np.array_equal(x, y) for (x, _), y in zip(a, c, strict=True)
    )


def test_labels_are_valid_yolo_and_cover_the_drawn_shapes() -> None:
    for img, shapes in iter_images(20, seed=1):
        width, height = img.size
        assert 320 <= width <= 512 and 320 <= height <= 512
        assert shapes, "every image has at least one object"
        for line, shape in zip(yolo_label_lines(shapes, width, height), shapes, strict=True):
            cls, cx, cy, w, h = line.split()
            assert int(cls) == shape.cls and shape.cls in range(len(CLASSES))
            values = [float(v) for v in (cx, cy, w, h)]
            assert all(0.0 <= v <= 1.0 for v in values)
            # The label is the drawn shape's box, back in pixels.
            x1, y1, x2, y2 = shape.xyxy
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            back = (
                (values[0] - values[2] / 2) * width, (values[1] - values[3] / 2) * height,
                (values[0] + values[2] / 2) * width, (values[1] + values[3] / 2) * height,
            )
            assert np.allclose(back, shape.xyxy, atol=0.01)


def test_generate_dataset_writes_disjoint_splits_and_data_yaml(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path, n_train=6, n_val=3, n_test=3, seed=0)
    spec = yaml.safe_load(data_yaml.read_text())
    names = spec["names"]
    assert (list(names.values()) if isinstance(names, dict) else names) == list(CLASSES)
    digests = {}
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        images = sorted((tmp_path / "images" / split).glob("*.jpg"))
        labels = sorted((tmp_path / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n
        assert [p.stem for p in images] == [p.stem for p in labels]
        digests[split] = set(_digest(tmp_path / "images" / split).values())
    assert not digests["train"] & digests["test"] and not digests["train"] & digests["val"]
    # Regenerating gives the very same files: `make train` reproduces the data.
    again = tmp_path / "again"
    generate_dataset(again, n_train=6, n_val=3, n_test=3, seed=0)
    assert _digest(again / "images" / "train") == _digest(tmp_path / "images" / "train")


# --- the drift scenario's shifted images ---------------------------------------------------


def _pixels(images: list) -> list[bytes]:
    return [np.asarray(img).tobytes() for img, _ in images]


def test_opacity_one_is_the_default_drawing() -> None:
    default = list(iter_images(3, seed=11))
    solid = list(iter_images(3, seed=11, opacity=1.0))
    assert _pixels(default) == _pixels(solid)


def test_translucent_shapes_keep_the_labels_and_let_the_background_through() -> None:
    solid_img, solid_shapes = render_image(random.Random(5), background="synthetic")
    faint_img, faint_shapes = render_image(random.Random(5), background="synthetic", opacity=0.5)
    assert [s.xyxy for s in faint_shapes] == [s.xyxy for s in solid_shapes]
    assert faint_img.size == solid_img.size
    solid, faint = (np.asarray(i, dtype=float) for i in (solid_img, faint_img))
    changed = np.abs(solid - faint).sum(axis=-1) > 3
    # Only pixels of (or at the anti-aliased edge of) the shapes differ.
    x1, y1, x2, y2 = (int(v) for v in solid_shapes[0].xyxy)
    assert changed[y1:y2, x1:x2].any()
    outside = np.ones_like(changed)
    for s in solid_shapes:
        a, b, c, d = (int(v) for v in s.xyxy)
        outside[max(b - 1, 0):d + 2, max(a - 1, 0):c + 2] = False
    assert not changed[outside].any()


@pytest.mark.parametrize("opacity", [0.0, -0.1, 1.5])
def test_opacity_out_of_range_is_refused(opacity: float) -> None:
    with pytest.raises(ValueError, match="opacity"):
        render_image(random.Random(0), opacity=opacity)


def test_data_yaml_can_point_splits_at_other_folders(tmp_path: Path) -> None:
    path = write_data_yaml(tmp_path, ("train", "val", "test"), folders={"train": "prod"})
    data = yaml.safe_load(path.read_text())
    splits = (data["train"], data["val"], data["test"])
    assert splits == ("images/prod", "images/val", "images/test")
    assert data["names"] == {0: "circle", 1: "square", 2: "triangle"}
