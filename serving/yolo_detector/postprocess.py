"""From the model's raw head to boxes in the decoded image's pixels.

``non_max_suppression`` matches Ultralytics' (``ultralytics/utils/nms.py``: best class per box,
class-aware greedy NMS with the torchvision semantics its pure-torch ``TorchNMS.nms`` reproduces,
``max_nms`` and ``max_wh``), and ``scale_boxes`` matches ``ultralytics/utils/ops.py`` (undo the
letterbox, clip to the image).

Example:
    >>> det = non_max_suppression(raw[0], conf=0.25, iou=0.7, max_det=300)  # doctest: +SKIP
    >>> det[:, :4] = scale_boxes((256, 320), det[:, :4], (480, 640))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

MAX_NMS = 30_000  # boxes kept for NMS, highest confidence first
MAX_WH = 7_680  # offset per class so that boxes of two classes never overlap


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre, width, height -> corners, in the same dtype."""
    out = np.empty_like(xywh)
    half = xywh[..., 2:] / 2
    out[..., :2] = xywh[..., :2] - half
    out[..., 2:] = xywh[..., :2] + half
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, highest score first (torchvision's semantics).

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        if not inter.any():
            order = rest
            continue
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    pred: np.ndarray, *, conf: float, iou: float, max_det: int, end2end: bool = False
) -> np.ndarray:
    """The detections of one image: (n, 6) float32 ``x1 y1 x2 y2 conf cls``, best first.

    Args:
        pred: one image's head output, (4 + classes, anchors) of ``xywh`` and class scores, or
            (max_det, 6) rows of ``x1 y1 x2 y2 conf cls`` for an end-to-end (NMS-free) model.
        conf: drop boxes whose best class score is not above this.
        iou: the NMS threshold.
        max_det: keep at most this many boxes.
        end2end: ``pred`` comes from an NMS-free model.
    """
    if end2end:
        return pred[pred[:, 4] > conf][:max_det].astype(np.float32, copy=False)
    scores = pred[4:]
    candidates = scores.max(0) > conf
    x = pred[:, candidates].T  # (m, 4 + classes)
    if not x.shape[0]:
        return np.zeros((0, 6), np.float32)
    cls_scores = x[:, 4:]
    j = cls_scores.argmax(1)
    best = cls_scores[np.arange(len(j)), j]
    det = np.concatenate(
        [xywh2xyxy(x[:, :4]), best[:, None], j[:, None].astype(np.float32)], axis=1
    )[best > conf]
    if not det.shape[0]:
        return det
    if det.shape[0] > MAX_NMS:
        det = det[np.argsort(-det[:, 4], kind="stable")[:MAX_NMS]]
    offsets = det[:, 5:6] * np.float32(MAX_WH)
    keep = nms(det[:, :4] + offsets, det[:, 4], iou)[:max_det]
    return det[keep]


def scale_boxes(
    input_shape: tuple[int, ...], boxes: np.ndarray, image_shape: tuple[int, ...]
) -> np.ndarray:
    """Map ``xyxy`` boxes from the letterboxed input back to the image, clipped to it.

    Args:
        input_shape: (height, width) of the model input the boxes are in.
        boxes: (n, 4) ``xyxy``; changed in place and returned.
        image_shape: (height, width, ...) of the decoded image.
    """
    gain = min(input_shape[0] / image_shape[0], input_shape[1] / image_shape[1])
    new_h, new_w = (max(round(side * gain), 1) for side in image_shape[:2])
    gain_y, gain_x = new_h / image_shape[0], new_w / image_shape[1]
    pad_x = round((input_shape[1] - new_w) / 2 - 0.1)
    pad_y = round((input_shape[0] - new_h) / 2 - 0.1)
    boxes[:, [0, 2]] -= pad_x
    boxes[:, [1, 3]] -= pad_y
    boxes[:, [0, 2]] /= gain_x
    boxes[:, [1, 3]] /= gain_y
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_shape[0])
    return boxes
