"""Fixtures for gateway tests: a fake TorchServe on ``httpx.MockTransport`` and app builders.

The network is faked, not the code: the gateway's real client, routes and error handlers run,
and only the bytes TorchServe would send back are scripted (``fake_torchserve.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.embeddings import EmbeddingBackend
from gateway.main import create_app
from tests.gateway.fake_torchserve import FakeEmbedder, FakeTorchServe, encode_image
from yoloserve.images import decode_array
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.settings import StoreSettings, sqlite_url


@pytest.fixture
def png_bytes() -> bytes:
    return encode_image("PNG")


@pytest.fixture
def fake_ts() -> FakeTorchServe:
    return FakeTorchServe()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults, isolated from the machine: no keys, registry and data folder in tmp."""
    return Settings(
        api_keys=[],
        admin_api_keys=[],
        cors_origins=[],
        store=StoreSettings(database_url=sqlite_url(tmp_path / "yoloserve.db")),
        mlflow_status_dir=tmp_path / "run",
        embedder_path=tmp_path / "missing-embedder.npz",
        data_dir=tmp_path / "data",
        # The hot-swap retry pause only slows the failure tests down; its own tests set it.
        predict_retry_delay_s=0.0,
    )


@pytest.fixture
def fake_embedder_loader() -> Callable[[], EmbeddingBackend]:
    return lambda: EmbeddingBackend(embedder=FakeEmbedder(), decode=decode_array)


@pytest.fixture
def build_app(
    fake_ts: FakeTorchServe,
    settings: Settings,
    fake_embedder_loader: Callable[[], EmbeddingBackend],
) -> Callable[..., FastAPI]:
    """Build an app on the fake TorchServe; keyword arguments override settings."""

    def build(
        embedder: bool = True, retrain: RetrainSettings | None = None, **overrides: Any
    ) -> FastAPI:
        return create_app(
            settings.model_copy(update=overrides),
            transport=httpx.MockTransport(fake_ts),
            embedder_loader=fake_embedder_loader if embedder else None,
            retrain_settings=retrain or RetrainSettings(),
        )

    return build


@pytest.fixture
def client(build_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    """A client of a default app, lifespan running."""
    with TestClient(build_app()) as test_client:
        yield test_client
