"""``EmbedderProvider``: load once, share, remember failures for a while."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.embeddings import EmbedderProvider, EmbeddingBackend, default_loader
from tests.gateway.fake_torchserve import FakeEmbedder
from yoloserve.errors import EmbeddingsUnavailable


def _backend() -> EmbeddingBackend:
    return EmbeddingBackend(embedder=FakeEmbedder(), decode=lambda data: np.zeros((1, 1, 3)))


async def test_loads_once_and_shares() -> None:
    calls = 0

    def loader() -> EmbeddingBackend:
        nonlocal calls
        calls += 1
        return _backend()

    provider = EmbedderProvider(loader)
    first, second = await provider.get(), await provider.get()
    assert first is second and calls == 1


async def test_failure_is_remembered_then_retried() -> None:
    attempts = 0

    def flaky() -> EmbeddingBackend:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ValueError("artifact of another descriptor version")
        return _backend()

    remembering = EmbedderProvider(flaky, retry_s=3600)
    for _ in range(3):
        with pytest.raises(EmbeddingsUnavailable, match="another descriptor version"):
            await remembering.get()
    assert attempts == 1

    retrying = EmbedderProvider(flaky, retry_s=0)
    assert (await retrying.get()).embedder.dim == FakeEmbedder.dim


async def test_default_loader_without_artifact(tmp_path) -> None:  # noqa: ANN001
    provider = EmbedderProvider(default_loader(tmp_path / "nothing.npz"))
    with pytest.raises(EmbeddingsUnavailable, match="not (found|installed)"):
        await provider.get()
