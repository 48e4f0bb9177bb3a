"""``scripts.scenario.report``: the figures of a run, its JSON and its table."""

from __future__ import annotations

import json

import pytest

from scripts.scenario.output import console
from scripts.scenario.report import Outcome, print_table


def _outcome(map50_new: float | None = 0.8) -> Outcome:
    return Outcome(
        old_version="1", new_version="2" if map50_new is not None else None,
        jobs=[{"job_id": "r-0001", "state": "succeeded", "candidate_version": "2"}],
        before={"drift_share": 0.9, "dataset_drift": 1.0, "f1": 0.4, "feedback_rows": 150.0},
        after={"drift_share": 0.2, "dataset_drift": 0.0, "f1": 0.9, "feedback_rows": 60.0},
        map50_old=0.5, map50_new=map50_new, ref_map50_old=None, ref_map50_new=None,
        sent_before={"images": 40}, sent_after={"images": 20}, test_images=100,
        manual_trigger=False, seconds=12.0,
    )


def test_verdicts_and_json() -> None:
    outcome = _outcome()
    assert outcome.drift_flagged_before
    assert outcome.gain == pytest.approx(0.3)
    data = json.loads(json.dumps(outcome.as_dict(0.2)))
    assert (data["map50_gain"], data["min_gain"], data["drift_flagged_before"]) == (
        pytest.approx(0.3), 0.2, True
    )
    assert data["jobs"][0]["job_id"] == "r-0001"
    assert _outcome(None).gain is None


def test_table_says_whether_the_goals_are_met() -> None:
    with console.capture() as captured:
        print_table(_outcome(), min_gain=0.2)
        print_table(_outcome(None), min_gain=0.2)
    text = captured.get()
    assert "r-0001 succeeded -> v2" in text
    assert "flagged drift before the retrain: yes" in text
    assert "+0.300 (goal >= +0.20): met" in text
    assert "n/a (goal >= +0.20): NOT met" in text
