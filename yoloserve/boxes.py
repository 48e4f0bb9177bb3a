"""Box geometry and YOLO label lines: one home for what the dataset generator and feedback share.

Boxes are ``(x1, y1, x2, y2)`` in pixels ("xyxy"), as the handler returns them. A YOLO label line
is ``cls cx cy w h`` with the centre and size normalised to the image, six decimals, the format
Ultralytics trains on; the generated dataset and stored feedback labels write it the same way.

Example:
    >>> iou((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    >>> yolo_label_line(1, (10, 20, 30, 60), width=100, height=100)
    '1 0.200000 0.400000 0.200000 0.400000'
"""

from __future__ import annotations

from collections.abc import Sequence

XYXY = tuple[float, float, float, float]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes; 0 when the union has no area.

    A box with x2 < x1 or y2 < y1 has no area.
    """
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def yolo_label_line(cls: int, xyxy: Sequence[float], width: int, height: int) -> str:
    """One YOLO label line, without its line end.

    Args:
        cls: class index.
        xyxy: the box in pixels of an image of ``width`` x ``height`` pixels.
        width, height: image size in pixels.

    Returns:
        ``"cls cx cy w h"``, the last four normalised to the image size, six decimals each.
    """
    x1, y1, x2, y2 = xyxy
    return (
        f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
    )
