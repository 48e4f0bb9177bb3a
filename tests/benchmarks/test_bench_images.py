"""benchmarks.images: the seeded bench image and the labels of feedback uploads."""

from __future__ import annotations

import io

from PIL import Image

from benchmarks.images import bench_image, feedback_boxes, grid_boxes
from yoloserve.training.dataset import Shape


def test_bench_image_is_seeded_square_jpeg() -> None:
    first, second = bench_image(320), bench_image(320)
    assert first == second
    with Image.open(io.BytesIO(bench_image(640))) as image:
        assert (image.format, image.size) == ("JPEG", (640, 640))


def test_grid_boxes_are_disjoint_inside_the_image_with_names_in_turn() -> None:
    boxes = grid_boxes(100, 60, 5, ["circle", "square"])
    assert len(boxes) == 5 and [b["name"] for b in boxes] == ["circle", "square"] * 2 + ["circle"]
    for k, a in enumerate(boxes):
        x1, y1, x2, y2 = a["xyxy"]
        assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 60
        for b in boxes[k + 1:]:
            u1, v1, u2, v2 = b["xyxy"]
            assert x2 <= u1 or u2 <= x1 or y2 <= v1 or v2 <= y1  # no overlap at all
    assert grid_boxes(100, 60, 0, ["circle"]) == []


def test_feedback_boxes_carry_the_true_shapes() -> None:
    shapes = [Shape(2, (1.234, 2.0, 30.5, 40.0)), Shape(0, (5.0, 5.0, 9.0, 9.0))]
    assert feedback_boxes(shapes) == [
        {"xyxy": [1.23, 2.0, 30.5, 40.0], "name": "triangle"},
        {"xyxy": [5.0, 5.0, 9.0, 9.0], "name": "circle"},
    ]
