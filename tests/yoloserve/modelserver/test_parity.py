"""Box matching of the parity check, on hand-made detections (no model)."""

from __future__ import annotations

import numpy as np

from yoloserve.modelserver.parity import ParityLimits, answer_array, compare_detections

LIMITS = ParityLimits()
THRESHOLD = 0.1


def _boxes(*rows: tuple[float, ...]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, list[str]]:
    failures: list[str] = []
    result = compare_detections("im", ref, got, limits=LIMITS, threshold=THRESHOLD,
                                failures=failures)
    return result.max_px, result.max_conf, failures


def test_same_boxes_in_another_order_match() -> None:
    ref = _boxes((0, 0, 10, 10, 0.9, 0), (20, 20, 40, 40, 0.8, 1))
    px, conf, failures = _compare(ref, ref[::-1].copy())
    assert (px, conf, failures) == (0.0, 0.0, [])


def test_moved_boxes_and_changed_confidences_are_measured() -> None:
    ref = _boxes((0, 0, 10, 10, 0.9, 0))
    px, conf, failures = _compare(ref, _boxes((0.7, 0, 10, 10, 0.895, 0)))
    assert px == 0.7 and abs(conf - 0.005) < 1e-9 and failures == []


def test_a_missing_or_extra_box_fails_and_another_class_is_no_match() -> None:
    ref = _boxes((0, 0, 10, 10, 0.9, 0))
    _, _, missing = _compare(ref, _boxes())
    _, _, other_class = _compare(ref, _boxes((0, 0, 10, 10, 0.9, 2)))
    assert len(missing) == 1 and "missing" in missing[0]
    assert len(other_class) == 2 and "adds" in other_class[1]


def test_a_box_at_the_threshold_may_fall_on_either_side() -> None:
    ref = _boxes((0, 0, 10, 10, 0.9, 0), (50, 50, 60, 60, THRESHOLD + 1e-4, 1))
    assert _compare(ref, ref[:1].copy())[2] == []
    assert _compare(ref[:1].copy(), ref)[2] == []


def test_answer_array_reads_the_handler_json() -> None:
    answer = {"boxes": [{"xyxy": [1, 2, 3, 4], "conf": 0.5, "cls": 2, "name": "triangle"}]}
    assert answer_array(answer).tolist() == [[1, 2, 3, 4, 0.5, 2]]
    assert answer_array({"boxes": []}).shape == (0, 6)
