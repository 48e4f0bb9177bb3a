"""The sampling strategies: each looks at one prediction and may pick it, with a priority.

A priority is in [0, 1]: how strongly the strategy wants a label (1 = the box sits right on the
threshold, a class absent from the reference data, ...). When several strategies pick the same
prediction, the strongest one gives the item its reason (:func:`choose`).

Example:
    >>> from yoloserve.schemas import Box
    >>> boxes = [Box(xyxy=[0, 0, 9, 9], conf=0.3, cls=0, name="circle")]
    >>> uncertain(boxes, threshold=0.25, band=0.1)
    Pick(reason='uncertain', priority=0.5)
    >>> rare(boxes, {"circle": 0.05, "square": 0.95}, rare_share=0.1)
    Pick(reason='rare', priority=0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from yoloserve.schemas import Box, ReviewReason


@dataclass(frozen=True)
class Pick:
    """Why a prediction is worth labelling and how strongly."""

    reason: ReviewReason
    priority: float


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


def uncertain(boxes: Sequence[Box], threshold: float, band: float) -> Pick | None:
    """The box whose confidence is nearest the threshold, if within ``band`` of it.

    Such a box flips between detected and missed with a small change of the model: its label
    teaches the model the most (uncertainty sampling).
    """
    gaps = [abs(box.conf - threshold) for box in boxes]
    inside = [gap for gap in gaps if gap <= band]
    if not inside:
        return None
    return Pick("uncertain", _clamp(1.0 - min(inside) / band))


def rare(boxes: Sequence[Box], class_share: Mapping[str, float], rare_share: float) -> Pick | None:
    """The rarest predicted class, if its share of the reference boxes is under ``rare_share``.

    A class the reference data has never seen counts as share 0. Without reference counts
    (``class_share`` empty) nothing is rare: there is nothing to compare with.
    """
    if not class_share or not boxes:
        return None
    share = min(class_share.get(box.name, 0.0) for box in boxes)
    if share >= rare_share:
        return None
    return Pick("rare", _clamp(1.0 - share / rare_share))


def nearest_distances(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``embeddings`` to its nearest row of ``reference``."""
    queries = np.asarray(embeddings, dtype=np.float64)
    refs = np.asarray(reference, dtype=np.float64)
    # |q - r|^2 = |q|^2 - 2 q.r + |r|^2, clipped: rounding may go a hair below zero.
    squared = (
        (queries**2).sum(axis=1)[:, None] - 2.0 * queries @ refs.T + (refs**2).sum(axis=1)[None, :]
    )
    return np.sqrt(np.clip(squared, 0.0, None).min(axis=1))


def novel(distances: Iterable[float], threshold: float) -> Pick | None:
    """The farthest box, if its distance to the reference set is beyond ``threshold``.

    Priority ``1 - threshold / distance``: 0 at the threshold, towards 1 far beyond it.
    """
    farthest = max(distances, default=0.0)
    if threshold <= 0 or farthest <= threshold:
        return None
    return Pick("novel", _clamp(1.0 - threshold / farthest))


def choose(picks: Iterable[Pick | None]) -> Pick | None:
    """The strongest pick; on a tie, the first (the order of ``GATEWAY_REVIEW_STRATEGIES``)."""
    best: Pick | None = None
    for pick in picks:
        if pick is not None and (best is None or pick.priority > best.priority):
            best = pick
    return best
