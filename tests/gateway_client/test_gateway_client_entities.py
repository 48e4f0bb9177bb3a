"""``gateway_client.entities``: the contract's JSON in, dataclasses out (and labels back)."""

from __future__ import annotations

import pytest

from gateway_client import Box, FeedbackResult, LabelBox, ModelsInfo, RetrainJob
from tests.gateway_client.fake_gateway import FEEDBACK_BODY, JOB_BODY, MODELS_BODY


def test_box_reads_numbers_of_any_json_type() -> None:
    box = Box.from_json({"xyxy": [1, "2", 3.5, 4], "conf": "0.5", "cls": 1.0, "name": 7})
    assert box == Box((1.0, 2.0, 3.5, 4.0), 0.5, 1, "7")


def test_label_box_rounds_to_hundredths() -> None:
    assert LabelBox((0.125, 1.0, 2.0049, 3.0), "circle").to_json() == {
        "xyxy": [0.12, 1.0, 2.0, 3.0],
        "name": "circle",
    }


def test_models_info_drops_missing_metrics_and_keeps_order() -> None:
    body = {**MODELS_BODY, "versions": [{"version": 3, "metrics": {"map50": None, "f1": 1}}]}
    info = ModelsInfo.from_json(body)
    assert info.classes == ["circle", "square", "triangle"]
    (version,) = info.versions
    assert (version.version, version.metrics, version.trained_on) == ("3", {"f1": 1.0}, {})
    assert version.status is None and version.parent is None


def test_feedback_result_without_retrain_block() -> None:
    body = {k: v for k, v in FEEDBACK_BODY.items() if k != "retrain"}
    result = FeedbackResult.from_json(body)
    assert (result.retrain_triggered, result.job_id, result.next_at_rows) == (False, None, None)


@pytest.mark.parametrize(
    ("state", "finished"),
    [("queued", False), ("running", False), ("succeeded", True), ("rejected", True),
     ("failed", True), (None, False)],
)
def test_retrain_job_finished(state: str | None, finished: bool) -> None:
    job = RetrainJob.from_json({**JOB_BODY, "state": state})
    assert job.finished is finished
    assert job.candidate_version == "3"


def test_retrain_job_needs_only_its_id() -> None:
    job = RetrainJob.from_json({"job_id": "r-0001"})
    assert (job.state, job.metrics, job.reason) == (None, {}, None)
    assert job.progress is None


@pytest.mark.parametrize(
    ("progress", "label", "fraction"),
    [
        ({"phase": "dataset"}, "dataset", 0.0),
        ({"phase": "training", "epoch": 0, "epochs": 8}, "training: epoch 0 of 8", 0.05),
        ({"phase": "training", "epoch": 3, "epochs": 8, "eta_s": 95},
         "training: epoch 3 of 8, about 1 min 35 s left", 0.35),
        ({"phase": "training", "epoch": 8, "epochs": 8, "eta_s": 0.0},
         "training: epoch 8 of 8, about 0 s left", 0.85),
        ({"phase": "evaluating", "epoch": None}, "evaluating", 0.85),
        ({"phase": "swapping"}, "swapping", 0.97),
        ({"phase": "a phase from a newer gateway"}, "a phase from a newer gateway", 0.0),
    ],
)
def test_retrain_progress_label_and_fraction(
    progress: dict[str, object], label: str, fraction: float
) -> None:
    job = RetrainJob.from_json({**JOB_BODY, "state": "running", "progress": progress})
    assert job.progress is not None
    assert job.progress.label == label
    assert job.progress.fraction == pytest.approx(fraction)


def test_retrain_progress_needs_its_phase() -> None:
    with pytest.raises(KeyError):
        RetrainJob.from_json({**JOB_BODY, "progress": {"epoch": 1}})
