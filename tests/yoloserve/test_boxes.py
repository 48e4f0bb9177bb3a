"""Box geometry and YOLO label lines (yoloserve.boxes)."""

from __future__ import annotations

import pytest

from yoloserve.boxes import iou, yolo_label_line

A = (0.0, 0.0, 10.0, 10.0)
A_SHIFTED = (1.0, 0.0, 11.0, 10.0)  # IoU with A: 90 / 110
FAR = (50.0, 50.0, 60.0, 60.0)
WIDE = (0.0, 0.0, 2.0, 1.0)
HALF = (0.0, 0.0, 1.0, 1.0)  # IoU with WIDE: exactly 1 / 2


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (A, A, 1.0),
        (A, FAR, 0.0),
        (WIDE, HALF, 0.5),
        (A, A_SHIFTED, 90 / 110),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((3, 3, 3, 3), (3, 3, 3, 3), 0.0),  # no area at all
        ((10, 10, 0, 0), A, 0.0),  # reversed corners have no area
    ],
)
def test_iou(a: tuple, b: tuple, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("cls", "xyxy", "size", "expected"),
    [
        (1, (10, 20, 30, 60), (100, 100), "1 0.200000 0.400000 0.200000 0.400000"),
        (0, (0, 0, 640, 480), (640, 480), "0 0.500000 0.500000 1.000000 1.000000"),
        (2, (1.5, 2.25, 3.0, 4.5), (7, 9), "2 0.321429 0.375000 0.214286 0.250000"),
    ],
)
def test_yolo_label_line(
    cls: int, xyxy: tuple[float, ...], size: tuple[int, int], expected: str
) -> None:
    assert yolo_label_line(cls, xyxy, *size) == expected
