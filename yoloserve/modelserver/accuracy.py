"""How accurate is a detector on a labelled image set? mAP50 and mAP50-95, scored by Ultralytics.

A quantized export cannot keep box parity with its ``.pt`` (boxes move by pixels, confidences by
percents), so its gate is accuracy instead: the packed handler and ``YOLO(weights).predict`` each
answer every image of a labelled set, and both are scored with Ultralytics' own metric code
(``DetectionValidator.match_predictions`` at IoU 0.50:0.95, ``ap_per_class``), so the figures
read like ``yolo val``'s. The candidate passes when both of its mAPs are within ``tolerance`` of
the reference's (either way: an export is meant to reproduce its ``.pt``, not to beat it).

Both sides run at ``conf=0.001``, ``iou=0.7``, as validation does; labels are YOLO txt files
(``.../images/x.jpg`` is labelled by ``.../labels/x.txt``, class cx cy w h normalised).

Example:
    >>> truth = np.array([[0, 10, 10, 50, 50]], dtype=float)
    >>> perfect = lambda image, conf: np.array([[10, 10, 50, 50, 0.9, 0]], dtype=float)
    >>> mean_ap(perfect, [Path("a.jpg")], labels={"a.jpg": truth}).map50  # 101-point COCO AP
    0.995
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from yoloserve.modelserver.parity import Detector
from yoloserve.offline import configure_offline

ACCURACY_CONF = 0.001  # what ``yolo val`` scores at: the whole precision-recall curve
ACCURACY_IOU = 0.7
TOLERANCE = 0.01


class MapScores(BaseModel):
    """One side's scores on the set."""

    map50: float
    map50_95: float


class AccuracyReport(BaseModel):
    """What the accuracy gate measured; recorded in the registry with the version."""

    passed: bool
    images: int
    boxes: int = Field(description="Labelled boxes in the set.")
    reference: MapScores = Field(description="The .pt through Ultralytics' predict.")
    candidate: MapScores = Field(description="The packed handler running the export.")
    deltas: dict[str, float] = Field(description="candidate - reference, per metric.")
    tolerance: float
    conf_threshold: float
    set: dict[str, Any] = Field(
        default_factory=dict, description="{name, images, manifest_sha256} of the images."
    )

    def summary(self) -> str:
        """One line for logs and error messages."""
        verdict = "within" if self.passed else "NOT within"
        ref, cand = self.reference, self.candidate
        name = self.set.get("name", "labelled images")
        return (
            f"mAP50 {cand.map50:.4f} vs {ref.map50:.4f} (.pt), mAP50-95 {cand.map50_95:.4f} vs "
            f"{ref.map50_95:.4f}: {verdict} {self.tolerance} of the .pt on {self.images} "
            f"{name} images ({self.boxes} boxes)"
        )


def label_path(image: Path) -> Path:
    """Ultralytics' rule: ``.../images/x.jpg`` is labelled by ``.../labels/x.txt``."""
    return Path(str(image).replace("/images/", "/labels/")).with_suffix(".txt")


def read_labels(image: Path) -> np.ndarray:
    """The image's YOLO labels as an (m, 5) array of ``cls x1 y1 x2 y2`` in pixels."""
    from PIL import Image

    path = label_path(image)
    rows = np.loadtxt(path, ndmin=2) if path.is_file() and path.stat().st_size else np.zeros((0, 5))
    with Image.open(image) as im:
        width, height = im.size
    cls, cx, cy, w, h = (rows[:, i] for i in range(5))
    xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height], axis=1)
    return np.concatenate([cls[:, None], xyxy], axis=1).reshape(-1, 5)


def match(detections: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Which detections are true positives at IoU 0.50, 0.55, .. 0.95: an (n, 10) bool array.

    ``DetectionValidator.match_predictions`` itself (greedy, in descending confidence), so a
    box counts exactly as it does in ``yolo val``.

    Args:
        detections: (n, 6) ``x1 y1 x2 y2 conf cls``, sorted by descending confidence.
        truth: (m, 5) ``cls x1 y1 x2 y2``.
    """
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import box_iou

    matcher: Any = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # all it reads of self
    if not len(detections) or not len(truth):
        return np.zeros((len(detections), 10), dtype=bool)
    iou = box_iou(torch.from_numpy(truth[:, 1:]), torch.from_numpy(detections[:, :4]))
    correct = DetectionValidator.match_predictions(
        matcher, torch.from_numpy(detections[:, 5]), torch.from_numpy(truth[:, 0]), iou
    )
    return np.asarray(correct.numpy(), dtype=bool)


def mean_ap(
    detector: Detector,
    images: Sequence[Path],
    *,
    conf: float = ACCURACY_CONF,
    labels: Mapping[str, np.ndarray] | None = None,
) -> MapScores:
    """mAP50 and mAP50-95 of ``detector`` on ``images`` (Ultralytics' ``ap_per_class``).

    Args:
        detector: (image, conf) -> (n, 6) ``x1 y1 x2 y2 conf cls`` in the image's pixels.
        images: labelled image files.
        conf: the confidence threshold the detector runs at.
        labels: image name -> (m, 5) ``cls x1 y1 x2 y2``, instead of the label files.
    """
    from ultralytics.utils.metrics import ap_per_class

    tps, confs, pred_cls, target_cls = [], [], [], []
    for image in images:
        truth = labels[image.name] if labels is not None else read_labels(image)
        found = np.asarray(detector(image, conf), dtype=np.float64).reshape(-1, 6)
        found = found[np.argsort(-found[:, 4], kind="stable")]
        tps.append(match(found, truth))
        confs.append(found[:, 4])
        pred_cls.append(found[:, 5])
        target_cls.append(truth[:, 0])
    targets = np.concatenate(target_cls) if target_cls else np.zeros(0)
    if not len(targets):
        return MapScores(map50=0.0, map50_95=0.0)
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pred_cls),
                      targets)[5]
    if not len(ap):  # no detection of any labelled class
        return MapScores(map50=0.0, map50_95=0.0)
    return MapScores(map50=round(float(ap[:, 0].mean()), 6),
                     map50_95=round(float(ap.mean()), 6))


def reference_detector(weights: Path, imgsz: int, iou: float = ACCURACY_IOU) -> Detector:
    """``YOLO(weights).predict`` as a :data:`Detector` (the side every export is judged against)."""
    configure_offline()
    from ultralytics import YOLO

    model: Any = YOLO(str(weights))  # its predict() is typed for every task at once

    def detect(image: Path, conf: float) -> np.ndarray:
        result = model.predict(str(image), imgsz=imgsz, conf=conf, iou=iou, verbose=False)[0]
        return np.asarray(result.boxes.data.cpu().numpy(), dtype=np.float64)

    return detect


def check_accuracy(
    weights: Path,
    candidate: Detector,
    images: Sequence[Path],
    *,
    imgsz: int,
    tolerance: float = TOLERANCE,
    conf: float = ACCURACY_CONF,
    image_set: Mapping[str, Any] | None = None,
) -> AccuracyReport:
    """Score ``candidate`` and ``YOLO(weights).predict`` on the same labelled ``images``.

    Args:
        weights: the ``.pt`` (the reference).
        candidate: what serves the export (the packed handler, run locally).
        images: labelled image files (the fixed benchmark set).
        imgsz: the serving size, for the reference.
        tolerance: how far each mAP may be from the reference's.
        conf: confidence threshold of both sides.
        image_set: the set's name (``{"name", "images", "manifest_sha256"}``), recorded.

    Returns:
        The report (``passed`` tells).
    """
    labels = {image.name: read_labels(image) for image in images}
    reference = mean_ap(reference_detector(weights, imgsz), images, conf=conf, labels=labels)
    scored = mean_ap(candidate, images, conf=conf, labels=labels)
    deltas = {key: round(getattr(scored, key) - getattr(reference, key), 6)
              for key in ("map50", "map50_95")}
    return AccuracyReport(
        passed=all(abs(d) <= tolerance for d in deltas.values()),
        images=len(images),
        boxes=sum(len(t) for t in labels.values()),
        reference=reference,
        candidate=scored,
        deltas=deltas,
        tolerance=tolerance,
        conf_threshold=conf,
        set=dict(image_set or {}),
    )
