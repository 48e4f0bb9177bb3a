"""``yoloserve.paths``: one settings class (``YOLOSERVE_*``), folders derived from the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloserve import paths
from yoloserve.paths import PathSettings


def test_defaults_follow_the_repository() -> None:
    assert (paths.ROOT / "yoloserve" / "paths.py").is_file()
    assert paths.SERVING_DIR == paths.ROOT / "serving"
    assert paths.REGISTRY_FILE == paths.MODELS_DIR / "registry.json"


def test_unset_folders_follow_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("YOLOSERVE_ROOT", str(tmp_path))
    monkeypatch.setenv("YOLOSERVE_DATA_DIR", str(tmp_path / "elsewhere"))
    settings = PathSettings()
    assert settings.models_dir == tmp_path / "models"
    assert settings.run_dir == tmp_path / ".run"
    assert settings.data_dir == tmp_path / "elsewhere"


def test_an_argument_wins_over_the_root() -> None:
    settings = PathSettings(root=Path("/srv/a"), run_dir=Path("/var/run/yolo"))
    assert settings.run_dir == Path("/var/run/yolo")
    assert settings.models_dir == Path("/srv/a/models")
