"""The champion/challenger gate: promote a candidate only if it holds up on the same eval set."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote the candidate, and why, in words for the job record."""

    promote: bool
    reason: str


def gate(
    candidate: Mapping[str, Any], current: Mapping[str, Any], tolerance: float
) -> GateDecision:
    """Promote when ``candidate["map50"] >= current["map50"] - tolerance`` (same eval set).

    A candidate without a finite mAP50 is never promoted; a current model without one counts as 0.

    Example:
        >>> gate({"map50": 0.90}, {"map50": 0.905}, 0.01).promote
        True
    """
    cand = float(candidate.get("map50", math.nan))
    curr = float(current.get("map50", math.nan))
    if not math.isfinite(cand):
        return GateDecision(False, "candidate has no finite mAP50")
    if not math.isfinite(curr):
        curr = 0.0
    bar = curr - tolerance
    if cand >= bar:
        return GateDecision(
            True, f"candidate mAP50 {cand:.4f} >= current {curr:.4f} - tolerance {tolerance:g}"
        )
    return GateDecision(
        False,
        f"candidate mAP50 {cand:.4f} < current {curr:.4f} - tolerance {tolerance:g} = {bar:.4f}",
    )


