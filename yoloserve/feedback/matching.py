"""Match ground-truth boxes to predicted boxes for feedback rows.

Greedy and class-agnostic: all pairs with IoU >= ``iou_thr`` are taken highest IoU first, each box
used at most once. Class-agnostic on purpose: a matched pair whose names differ is exactly the
confusion a feedback row must record (target ``square``, prediction ``circle``).

Output: one ``Match`` per ground-truth box, in ground-truth order (prediction ``__missed__`` when
nothing matched it), then one per unmatched prediction, in prediction order (target
``__background__``: the model saw an object where there is none).

Example:
    >>> gt = [((0, 0, 10, 10), "square")]
    >>> pred = [((1, 0, 10, 10), "circle", 0.9), ((50, 50, 60, 60), "square", 0.4)]
    >>> [(m.target, m.prediction) for m in match(gt, pred)]
    [('square', 'circle'), ('__background__', 'square')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from yoloserve.boxes import XYXY, iou

MISSED = "__missed__"
BACKGROUND = "__background__"


@dataclass(frozen=True)
class Match:
    """One feedback row before it is embedded.

    Attributes:
        target: the ground-truth name, or ``__background__`` for an unmatched prediction.
        prediction: the matched predicted name, or ``__missed__`` for an unmatched ground truth.
        xyxy: the box the row describes: the ground-truth box when there is one, else the
            predicted box.
        gt_index: index into the ground-truth list, or ``None``.
        pred_index: index into the prediction list, or ``None``.
    """

    target: str
    prediction: str
    xyxy: XYXY
    gt_index: int | None
    pred_index: int | None


def _box(xyxy: Sequence[float]) -> XYXY:
    if len(xyxy) != 4:
        raise ValueError(f"a box needs 4 coordinates, got {len(xyxy)}")
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box has non-finite coordinates: {xyxy}")
    return (x1, y1, x2, y2)


def match(
    gt: list[tuple[XYXY, str]],
    pred: list[tuple[XYXY, str, float]],
    iou_thr: float = 0.5,
) -> list[Match]:
    """Greedy IoU matching of ground truth to predictions.

    Ties in IoU go to the more confident prediction, then to the lower indices, so the result
    does not depend on anything but the inputs.

    Args:
        gt: ground truth as ``(xyxy, name)``.
        pred: predictions as ``(xyxy, name, conf)``.
        iou_thr: a pair matches when its IoU is at least this (inclusive), in (0, 1].

    Returns:
        One ``Match`` per ground-truth box (in order), then one per unmatched prediction.

    Raises:
        ValueError: a box is not 4 finite numbers, a confidence is not finite, or ``iou_thr``
            is outside (0, 1].
    """
    if not 0.0 < iou_thr <= 1.0:
        raise ValueError(f"iou_thr must be in (0, 1], got {iou_thr}")
    gt_boxes = [_box(b) for b, _ in gt]
    pred_boxes = [_box(b) for b, _, _ in pred]
    confs = [float(c) for _, _, c in pred]
    if not all(math.isfinite(c) for c in confs):
        raise ValueError("prediction confidences must be finite")
    pairs = []
    for i, g in enumerate(gt_boxes):
        for j, p in enumerate(pred_boxes):
            overlap = iou(g, p)
            if overlap >= iou_thr:
                pairs.append((-overlap, -confs[j], i, j))
    pairs.sort()

    gt_to_pred: dict[int, int] = {}
    used_pred: set[int] = set()
    for _, _, i, j in pairs:
        if i not in gt_to_pred and j not in used_pred:
            gt_to_pred[i] = j
            used_pred.add(j)

    out = [
        Match(name, pred[gt_to_pred[i]][1] if i in gt_to_pred else MISSED, gt_boxes[i], i,
              gt_to_pred.get(i))
        for i, (_, name) in enumerate(gt)
    ]
    out += [
        Match(BACKGROUND, name, pred_boxes[j], None, j)
        for j, (_, name, _) in enumerate(pred)
        if j not in used_pred
    ]
    return out
