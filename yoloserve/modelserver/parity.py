"""Does an export answer what its ``.pt`` answers? Checked on fixed images before packaging.

The reference is Ultralytics' own ``predict`` on the ``.pt`` (what users compare us with); the
candidate is what will serve, the packed handler running the export. Both see the same files:
real photos bundled with scikit-image (a JPEG and PNGs, one of them greyscale) and seeded shapes
scenes on photo backgrounds, so there are boxes of every class to compare. A box matches the
reference box of the same class it overlaps most (IoU >= 0.5); the export passes when every box
has its match, boxes agree within ``px`` pixels and confidences within ``conf``.

A box whose confidence is within ``conf`` of the threshold may fall on either side of it in a
faithful export; such a box without a match is not counted against the export.

Example:
    >>> limits = ParityLimits()
    >>> (limits.px, limits.conf)
    (0.5, 0.001)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from yoloserve.offline import configure_offline

PHOTOS = ("rocket.jpg", "coffee.png", "astronaut.png", "camera.png")  # camera: greyscale
# Shapes scenes on photo backgrounds (yoloserve.training.dataset.iter_images(3, 7, "photo")),
# shipped as files so every packager compares on the same bytes: boxes of every class.
SCENES_DIR = Path(__file__).with_name("parity_images")
MATCH_IOU = 0.5
# Below predict's default threshold, so near-threshold boxes are compared too.
PARITY_CONF = 0.1


@dataclass(frozen=True)
class ParityLimits:
    """How far an export may be from its ``.pt``: pixels per box coordinate, confidence."""

    px: float = 0.5
    conf: float = 1e-3


class ParityReport(BaseModel):
    """What the check measured; recorded in the registry with the version."""

    passed: bool
    images: int
    boxes: int = Field(description="Reference boxes compared.")
    max_box_px: float
    max_conf: float
    limits: dict[str, float]
    conf_threshold: float
    failures: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and error messages."""
        verdict = "parity" if self.passed else "NO parity"
        return (
            f"{verdict} on {self.images} images, {self.boxes} boxes: max box error "
            f"{self.max_box_px:.4f} px (limit {self.limits['px']}), max conf error "
            f"{self.max_conf:.5f} (limit {self.limits['conf']})"
        )


def parity_images() -> list[Path]:
    """The fixed images: scikit-image's bundled photos and the shipped seeded scenes.

    Raises:
        FileNotFoundError: scikit-image ships none of the photos.
    """
    import skimage

    bundled = Path(skimage.__file__).parent / "data"
    photos = [bundled / name for name in PHOTOS if (bundled / name).is_file()]
    if not photos:
        raise FileNotFoundError(f"none of {PHOTOS} in {bundled}")
    return [*photos, *sorted(SCENES_DIR.glob("scene_*.jpg"))]


@dataclass
class _Comparison:
    pairs: int = 0
    max_px: float = 0.0
    max_conf: float = 0.0


def compare_detections(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    limits: ParityLimits,
    threshold: float,
    failures: list[str],
) -> _Comparison:
    """Match ``candidate`` boxes to ``reference`` ones; append what breaks parity to ``failures``.

    Args:
        name: the image, for messages.
        reference, candidate: (n, 6) arrays of ``x1 y1 x2 y2 conf cls``.
        limits: the tolerances.
        threshold: the confidence threshold both sides ran with.
        failures: collects one message per unmatched box or exceeded tolerance.
    """
    import torch
    from ultralytics.utils.metrics import box_iou

    result = _Comparison()
    free = np.ones(len(candidate), dtype=bool)
    reference = reference[np.argsort(-reference[:, 4], kind="stable")]
    overlaps = box_iou(torch.from_numpy(reference[:, :4]), torch.from_numpy(candidate[:, :4]))
    for row, box in enumerate(reference):
        same = free & (candidate[:, 5] == box[5]) if len(candidate) else free
        if same.any():
            ious = np.where(same, overlaps[row].numpy(), -1.0)
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                free[best] = False
                px = float(np.abs(candidate[best, :4] - box[:4]).max())
                dconf = float(abs(candidate[best, 4] - box[4]))
                result.pairs += 1
                result.max_px, result.max_conf = max(result.max_px, px), max(result.max_conf, dconf)
                continue
        if box[4] >= threshold + limits.conf:
            failures.append(f"{name}: class {int(box[5])} box {box[:4].round(1).tolist()} "
                            f"(conf {box[4]:.3f}) is missing from the export")
    for box in candidate[free]:
        if box[4] >= threshold + limits.conf:
            failures.append(f"{name}: the export adds a class {int(box[5])} box "
                            f"{box[:4].round(1).tolist()} (conf {box[4]:.3f})")
    return result


Detector = Callable[[Path, float], np.ndarray]
"""Detections of one image file at a confidence threshold: (n, 6) ``x1 y1 x2 y2 conf cls``."""


def answer_array(answer: dict[str, Any]) -> np.ndarray:
    """The handler's JSON boxes as an (n, 6) array."""
    rows = [[*box["xyxy"], box["conf"], box["cls"]] for box in answer.get("boxes", [])]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def check_parity(
    weights: Path,
    candidate: Detector,
    images: Sequence[Path],
    *,
    imgsz: int,
    limits: ParityLimits | None = None,
    conf: float = PARITY_CONF,
) -> ParityReport:
    """Compare ``candidate`` with Ultralytics' ``YOLO(weights).predict`` on ``images``.

    Args:
        weights: the ``.pt`` (the reference).
        candidate: what serves the export (the packed handler, run locally).
        images: image files.
        imgsz: the serving size, for the reference.
        limits: tolerances; :class:`ParityLimits` by default.
        conf: confidence threshold of both sides.

    Returns:
        The report (``passed`` tells).
    """
    configure_offline()
    from ultralytics import YOLO

    limits = limits or ParityLimits()
    reference: Any = YOLO(str(weights))  # its predict() is typed for every task at once
    failures: list[str] = []
    boxes, max_px, max_conf = 0, 0.0, 0.0
    for image in images:
        result = reference.predict(str(image), imgsz=imgsz, conf=conf, verbose=False)[0]
        ref = result.boxes.data.cpu().numpy().astype(np.float64)
        compared = compare_detections(
            image.name, ref, candidate(image, conf), limits=limits, threshold=conf,
            failures=failures,
        )
        boxes += len(ref)
        max_px, max_conf = max(max_px, compared.max_px), max(max_conf, compared.max_conf)
    if max_px > limits.px:
        failures.append(f"a box moved {max_px:.3f} px (limit {limits.px})")
    if max_conf > limits.conf:
        failures.append(f"a confidence changed by {max_conf:.5f} (limit {limits.conf})")
    return ParityReport(
        passed=not failures,
        images=len(images),
        boxes=boxes,
        max_box_px=round(max_px, 6),
        max_conf=round(max_conf, 7),
        limits={"px": limits.px, "conf": limits.conf},
        conf_threshold=conf,
        failures=failures[:20],
    )
