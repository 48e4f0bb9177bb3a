"""The shifted images of the drift scenario: translucent shapes, same labels, and the shipped
synthetic set unchanged by the option."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from yoloserve.training.dataset import iter_images, render_image, write_data_yaml


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
