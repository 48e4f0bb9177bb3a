"""Settings from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from yoloserve import paths


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_PORT", "GATEWAY_API_KEYS", "TORCHSERVE_INFERENCE_URL",
                 "TORCHSERVE_MANAGEMENT_URL", "TORCHSERVE_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.port == 8080
    assert settings.torchserve.inference_url == "http://127.0.0.1:8085"
    assert settings.torchserve.management_url == "http://127.0.0.1:8086"
    assert settings.torchserve.model_name == "yolo"
    assert settings.store.url == f"sqlite:///{paths.DATA_DIR.resolve() / 'yoloserve.db'}"
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert not settings.auth_enabled


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9090")
    monkeypatch.setenv("GATEWAY_API_KEYS", "k1, k2,")
    monkeypatch.setenv("GATEWAY_ADMIN_API_KEYS", "")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "http://localhost:8081")
    monkeypatch.setenv("STORE_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/yoloserve")
    monkeypatch.setenv("GATEWAY_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("TORCHSERVE_INFERENCE_URL", "http://serving:8085")
    monkeypatch.setenv("TORCHSERVE_MODEL_NAME", "other")
    settings = Settings()
    assert settings.port == 9090
    assert settings.api_keys == ["k1", "k2"]
    assert settings.admin_api_keys == []
    assert settings.cors_origins == ["http://localhost:8081"]
    assert settings.store.url == "postgresql+psycopg://u:p@db:5432/yoloserve"
    assert settings.torchserve.inference_url == "http://serving:8085"
    assert settings.torchserve.management_url == "http://127.0.0.1:8086"
    assert settings.torchserve.model_name == "other"
    assert settings.max_body_bytes == 1000 + settings.multipart_overhead_bytes
    assert settings.auth_enabled


@pytest.mark.parametrize(
    "env", [{"GATEWAY_PORT": "0"}, {"GATEWAY_PREDICT_TIMEOUT_S": "-1"}, {"GATEWAY_LOG_LEVEL": "x"}]
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
