"""Lazy, shared access to ``yoloserve.embeddings.embedder`` for the gateway.

The embedder artifact is built by a separate step (the reference-data script), so the gateway
must start and serve predictions without it. It is loaded on the first request that needs it,
once, and shared. A failed load is remembered for ``retry_s`` so that a missing artifact costs
one attempt per retry period rather than one per request; an artifact built later is picked up
without a restart.

The backend pairs the embedder with its decoder: production rows must go through the very code
that built the reference rows (``yoloserve.images.decode_array``).

Example:
    >>> import asyncio, numpy as np
    >>> class Fake:
    ...     dim, version = 2, "t"
    ...     def embed(self, image, boxes):
    ...         return np.zeros((len(boxes), 2), dtype=np.float32)
    >>> provider = EmbedderProvider(loader=lambda: EmbeddingBackend(Fake(), decode=lambda b: b))
    >>> asyncio.run(provider.get()).embedder.dim
    2
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from starlette.concurrency import run_in_threadpool

from yoloserve.errors import EmbeddingsUnavailable
from yoloserve.images import decode_array

logger = logging.getLogger("gateway.embeddings")


class SupportsEmbed(Protocol):
    """The part of ``yoloserve.embeddings.embedder.Embedder`` the gateway uses."""

    dim: int
    version: str

    def embed(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """(n, dim) float32 embeddings of ``boxes`` (xyxy pixels) in an HxWx3 RGB image."""
        ...


@dataclass(frozen=True)
class EmbeddingBackend:
    """An embedder and the decoder whose arrays it expects.

    Attributes:
        embedder: Computes the vectors.
        decode: Image bytes -> upright HxWx3 uint8 RGB array; raises ``InvalidImage`` (or
            ``ImageTooLarge``) on a bad image, which the gateway answers 415 (413).
    """

    embedder: SupportsEmbed
    decode: Callable[[bytes], np.ndarray]


def default_loader(path: Path | None) -> Callable[[], EmbeddingBackend]:
    """A loader for the real embedder, imported only when first needed.

    Args:
        path: The artifact; None lets ``Embedder.load`` use its default location.
    """

    def load() -> EmbeddingBackend:
        try:
            module = importlib.import_module("yoloserve.embeddings.embedder")
        except ImportError as exc:
            raise EmbeddingsUnavailable("the embeddings module is not installed") from exc
        try:
            embedder: SupportsEmbed = module.Embedder.load(path)
        except FileNotFoundError as exc:
            raise EmbeddingsUnavailable(
                f"embedder artifact not found ({exc.filename}); build the reference data first"
            ) from exc
        return EmbeddingBackend(embedder=embedder, decode=decode_array)

    return load


class EmbedderProvider:
    """Loads the embedding backend on first use and hands out the shared instance.

    Args:
        loader: Builds the backend; may raise anything, which becomes ``EmbeddingsUnavailable``.
        retry_s: After a failed load, answer unavailable for this long before trying again.
    """

    def __init__(self, loader: Callable[[], EmbeddingBackend], retry_s: float = 30.0) -> None:
        self._loader = loader
        self._retry_s = retry_s
        self._backend: EmbeddingBackend | None = None
        self._failure: str | None = None
        self._failed_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> EmbeddingBackend:
        """The loaded backend.

        Raises:
            EmbeddingsUnavailable: It is not installed, or failed to load recently.
        """
        if self._backend is not None:
            return self._backend
        async with self._lock:
            if self._backend is not None:
                return self._backend
            if self._failure and time.monotonic() - self._failed_at < self._retry_s:
                raise EmbeddingsUnavailable(self._failure)
            try:
                # Loading reads files and builds arrays: keep it off the event loop.
                backend = await run_in_threadpool(self._loader)
            except Exception as exc:
                if isinstance(exc, EmbeddingsUnavailable):
                    self._failure = exc.message
                else:
                    self._failure = f"the embedder failed to load: {type(exc).__name__}: {exc}"
                self._failed_at = time.monotonic()
                logger.warning("embeddings unavailable: %s", self._failure)
                raise EmbeddingsUnavailable(self._failure) from exc
            self._backend, self._failure = backend, None
            logger.info(
                "embedder loaded: dim=%s version=%s", backend.embedder.dim, backend.embedder.version
            )
            return backend
