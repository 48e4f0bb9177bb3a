"""Guarded MLflow runs (yoloserve.tracking.runs): off means no-op, an outage is counted, never
raised. The real server is exercised in tests/integration/test_mlflow_tracking.py."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from devstack.ports import free_port
from yoloserve.tracking import status
from yoloserve.tracking.runs import RunTracker, flat
from yoloserve.tracking.settings import TrackingSettings, run_url


def test_tracking_is_off_without_a_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not TrackingSettings().enabled
    monkeypatch.setenv("MLFLOW_TRACKING_URI", " ")
    assert not TrackingSettings().enabled
    tracker = RunTracker.start(TrackingSettings(), tmp_path, name="nothing")
    tracker.params(epochs=1)
    tracker.metrics({"map50": 0.9})
    tracker.artifact(tmp_path)
    tracker.end()
    assert not tracker.active and tracker.run_id is None
    assert status.read_status(tmp_path)["failures_total"] == 0


def test_an_unreachable_server_is_counted_not_raised(tmp_path: Path) -> None:
    settings = TrackingSettings(tracking_uri=f"http://127.0.0.1:{free_port()}", http_timeout_s=2)
    started = time.monotonic()
    tracker = RunTracker.start(settings, tmp_path, name="outage")
    assert tracker.run_id is None and not tracker.active
    assert time.monotonic() - started < 30, "an outage costs a timeout, not MLflow's retries"
    data = status.read_status(tmp_path)
    assert data["failures_total"] == 1 and data["in_sync"] is False
    assert "start run" in data["last_error"]


def test_flat_keeps_finite_numbers_with_dotted_names() -> None:
    values = {"candidate": {"map50": 0.9, "per_class": {"circle": {"map50": 1}}},
              "name": "x", "bad": math.nan, "flag": True, "metrics/mAP50(B)": 0.5}
    assert flat(values) == {"candidate.map50": 0.9, "candidate.per_class.circle.map50": 1.0,
                            "metrics/mAP50B": 0.5}


def test_run_url_needs_all_three_parts() -> None:
    assert run_url("http://h:8083/", "2", "r") == "http://h:8083/#/experiments/2/runs/r"
    assert run_url(None, "2", "r") is None and run_url("http://h", None, "r") is None
