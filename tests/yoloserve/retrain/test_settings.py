"""Retrain settings (yoloserve.retrain.settings): what reaches the job process."""

from __future__ import annotations

import pytest

from yoloserve.retrain.settings import RetrainSettings


def test_settings_reach_the_job_process_through_its_environment(
    settings: RetrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = settings.child_environment("sqlite:////elsewhere/yoloserve.db")
    for key, value in env.items():
        if key.startswith("RETRAIN_"):
            monkeypatch.setenv(key, value)
    again = RetrainSettings()
    assert again.model_dump() == {
        **settings.model_dump(),
        "store": {**settings.store.model_dump(), "database_url": "sqlite:////elsewhere/yoloserve.db"},
    }
    assert env["STORE_DATABASE_URL"] == "sqlite:////elsewhere/yoloserve.db"
