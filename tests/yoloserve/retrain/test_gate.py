"""The promotion gate (yoloserve.retrain.gate): not worse than the serving version, NaN-safe."""

from __future__ import annotations

import math

import pytest

from yoloserve.retrain.gate import gate


@pytest.mark.parametrize(
    ("candidate", "current", "tolerance", "promote"),
    [
        (0.90, 0.85, 0.01, True),   # better
        (0.85, 0.85, 0.00, True),   # equal is enough
        (0.845, 0.85, 0.01, True),  # within tolerance
        (0.84, 0.85, 0.01, True),   # exactly at the bar
        (0.83, 0.85, 0.01, False),  # below the bar
        (0.00, 0.00, 0.00, True),   # nothing learned either way: not worse
        (math.nan, 0.85, 0.01, False),
        (0.10, math.nan, 0.01, True),
    ],
)
def test_gate(candidate: float, current: float, tolerance: float, promote: bool) -> None:
    decision = gate({"map50": candidate}, {"map50": current}, tolerance)
    assert decision.promote is promote
    assert "mAP50" in decision.reason
