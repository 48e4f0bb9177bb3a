"""Retrain settings (yoloserve.retrain.settings): what reaches the job process."""

from __future__ import annotations

import os

import pytest

from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.retrain.settings import RetrainSettings

PREFIXES = ("RETRAIN_", "STORE_", "TORCHSERVE_")


def test_settings_reach_the_job_process_through_its_environment(
    settings: RetrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"torchserve": TorchServeSettings(
        inference_url="http://serving:8085", management_url="http://serving:8086",
        model_name="other",
    )})
    # A stale nested variable of the parent's must not reach the child.
    monkeypatch.setenv("RETRAIN_TORCHSERVE", '{"inference_url": "http://stale:1"}')
    env = settings.child_environment("sqlite:////elsewhere/yoloserve.db")
    for key in [k for k in os.environ if k.startswith(PREFIXES)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(PREFIXES):
            monkeypatch.setenv(key, value)
    again = RetrainSettings()
    assert again.model_dump() == {
        **settings.model_dump(),
        "store": {**settings.store.model_dump(), "database_url": "sqlite:////elsewhere/yoloserve.db"},
    }
    assert env["STORE_DATABASE_URL"] == "sqlite:////elsewhere/yoloserve.db"
    assert env["TORCHSERVE_INFERENCE_URL"] == "http://serving:8085"
    assert env["TORCHSERVE_MANAGEMENT_URL"] == "http://serving:8086"
    assert env["TORCHSERVE_MODEL_NAME"] == "other"
    assert "RETRAIN_TORCHSERVE" not in env and "RETRAIN_STORE" not in env
