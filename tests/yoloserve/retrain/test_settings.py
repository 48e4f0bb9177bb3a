"""Retrain settings (yoloserve.retrain.settings): what reaches the job process."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloserve.retrain.settings import RetrainSettings


def test_settings_reach_the_job_process_through_its_environment(
    settings: RetrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = settings.child_environment(Path("/elsewhere/registry.json"))
    for key, value in env.items():
        if key.startswith("RETRAIN_"):
            monkeypatch.setenv(key, value)
    again = RetrainSettings()
    assert again.model_dump() == {
        **settings.model_dump(), "registry_path": Path("/elsewhere/registry.json")
    }
