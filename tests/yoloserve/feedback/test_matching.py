"""Greedy IoU matching of ground truth to predictions (yoloserve.feedback.matching)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pytest

from yoloserve.feedback.matching import BACKGROUND, MISSED, Match, match

A = (0.0, 0.0, 10.0, 10.0)
A_SHIFTED = (1.0, 0.0, 11.0, 10.0)  # IoU with A: 90 / 110
FAR = (50.0, 50.0, 60.0, 60.0)
WIDE = (0.0, 0.0, 2.0, 1.0)
HALF = (0.0, 0.0, 1.0, 1.0)  # IoU with WIDE: exactly 1 / 2
JUST_BELOW = (0.0, 0.0, 0.999, 1.0)  # IoU with WIDE: 0.4995

# (gt, pred, expected [(target, prediction, gt_index, pred_index)])
CASES = [
    pytest.param([], [], [], id="both-empty"),
    pytest.param([(A, "square")], [], [("square", MISSED, 0, None)], id="no-predictions"),
    pytest.param([], [(A, "circle", 0.9)], [(BACKGROUND, "circle", None, 0)], id="no-gt"),
    pytest.param([(A, "square")], [(A, "square", 0.9)], [("square", "square", 0, 0)],
                 id="exact-match"),
    pytest.param([(A, "square")], [(A_SHIFTED, "circle", 0.8)], [("square", "circle", 0, 0)],
                 id="class-confusion-is-a-match"),
    pytest.param([(A, "square")], [(FAR, "square", 0.9)],
                 [("square", MISSED, 0, None), (BACKGROUND, "square", None, 0)],
                 id="no-overlap"),
    pytest.param([(WIDE, "square")], [(HALF, "square", 0.9)], [("square", "square", 0, 0)],
                 id="iou-exactly-threshold-matches"),
    pytest.param([(WIDE, "square")], [(JUST_BELOW, "square", 0.9)],
                 [("square", MISSED, 0, None), (BACKGROUND, "square", None, 0)],
                 id="iou-just-below-threshold"),
    pytest.param([(A, "square")], [(A, "circle", 0.4), (A, "square", 0.9)],
                 [("square", "square", 0, 1), (BACKGROUND, "circle", None, 0)],
                 id="duplicate-predictions-tie-goes-to-higher-conf"),
    pytest.param([(A, "square"), (A, "circle")], [(A, "circle", 0.9)],
                 [("square", "circle", 0, 0), ("circle", MISSED, 1, None)],
                 id="duplicate-gt-tie-goes-to-lower-index"),
    pytest.param([(A, "square"), (A_SHIFTED, "circle")], [(A_SHIFTED, "circle", 0.9)],
                 [("square", MISSED, 0, None), ("circle", "circle", 1, 0)],
                 id="highest-iou-first-not-gt-order"),
    pytest.param([(A, "square")], [(A_SHIFTED, "circle", 0.99), (A, "square", 0.1)],
                 [("square", "square", 0, 1), (BACKGROUND, "circle", None, 0)],
                 id="iou-beats-confidence"),
    pytest.param([(FAR, "triangle"), (A, "square")],
                 [(A, "square", 0.9), (FAR, "triangle", 0.8), ((80, 80, 90, 90), "circle", 0.3)],
                 [("triangle", "triangle", 0, 1), ("square", "square", 1, 0),
                  (BACKGROUND, "circle", None, 2)],
                 id="several-objects-output-order"),
]


@pytest.mark.parametrize(("gt", "pred", "expected"), CASES)
def test_match(
    gt: list, pred: list, expected: list[tuple[str, str, int | None, int | None]]
) -> None:
    got = match(gt, pred)
    assert [(m.target, m.prediction, m.gt_index, m.pred_index) for m in got] == expected


def test_rows_carry_the_gt_box_or_else_the_predicted_box() -> None:
    got = match([(A, "square"), (FAR, "circle")], [(A_SHIFTED, "square", 0.9),
                                                   ((80, 80, 90, 90), "circle", 0.5)])
    assert got == [
        Match("square", "square", A, 0, 0),
        Match("circle", MISSED, FAR, 1, None),
        Match(BACKGROUND, "circle", (80.0, 80.0, 90.0, 90.0), None, 1),
    ]


def test_threshold_is_configurable() -> None:
    pred = [(A_SHIFTED, "square", 0.9)]  # IoU 0.818
    assert match([(A, "square")], pred, iou_thr=0.8)[0].prediction == "square"
    assert match([(A, "square")], pred, iou_thr=0.85)[0].prediction == MISSED


@pytest.mark.parametrize(
    ("gt", "pred", "iou_thr", "exception"),
    [
        ([(A, "a")], [(A, "a", 0.5)], 0.5, nullcontext()),
        ([(A, "a")], [(A, "a", 0.5)], 1.0, nullcontext()),
        ([((5, 5, 5, 5), "a")], [(A, "a", 0.5)], 0.5, nullcontext()),  # zero area: no match
        ([(A, "a")], [], 0.0, pytest.raises(ValueError)),
        ([(A, "a")], [], 1.5, pytest.raises(ValueError)),
        ([((0, 0, float("nan"), 1), "a")], [], 0.5, pytest.raises(ValueError)),
        ([((0, 0, 1), "a")], [], 0.5, pytest.raises(ValueError)),
        ([], [(A, "a", float("nan"))], 0.5, pytest.raises(ValueError)),
    ],
)
def test_match_validation(
    gt: list, pred: list, iou_thr: float, exception: AbstractContextManager[object]
) -> None:
    with exception:
        match(gt, pred, iou_thr)
