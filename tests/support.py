"""Assertions shared by several test folders."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_same_boxes(ours: list[dict[str, Any]], result: Any) -> None:
    """Every Ultralytics box has one of ours: same class, conf within 1e-3, coords within 0.5."""
    theirs = list(
        zip(
            result.boxes.xyxy.tolist(),
            result.boxes.conf.tolist(),
            result.boxes.cls.int().tolist(),
            strict=True,
        )
    )
    assert len(ours) == len(theirs)
    unmatched = list(ours)
    # Matching, not zipping: boxes with equal confidence may come in either order.
    for xyxy, conf, cls in theirs:
        match = next(
            (
                b for b in unmatched
                if b["cls"] == cls and abs(b["conf"] - conf) <= 1e-3
                and np.abs(np.array(b["xyxy"]) - np.array(xyxy)).max() <= 0.5
            ),
            None,
        )
        assert match is not None, f"no match for {cls} {conf:.4f} {xyxy}"
        unmatched.remove(match)
