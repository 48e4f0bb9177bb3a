"""A linear 2-D view for Evidently's EmbeddingsDrift widget, in place of its t-SNE.

EmbeddingsDrift always draws a 2-D density of both samples, and builds it with t-SNE on up to
2,500 + 2,500 rows: 12 s for 200 rows and 44 s for 2,000 on our 2 cores, whatever drift method is
asked for, while the drift score itself takes milliseconds. The projection only feeds that
picture, so ``embedding_projection("pca")`` swaps in a PCA view while a report runs; no score
changes.

Example:
    >>> with embedding_projection("pca"):  # doctest: +SKIP
    ...     snapshot = report.run(current, reference)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from sklearn.decomposition import PCA


class _PcaProjection:
    """Stands in for ``sklearn.manifold.TSNE`` inside Evidently's EmbeddingsDrift widget."""

    def __init__(self, n_components: int = 2, **_: Any) -> None:
        self.n_components = n_components

    def fit_transform(self, x: Any) -> np.ndarray:
        data = np.asarray(x, dtype=float)
        k = max(1, min(self.n_components, *data.shape))
        out = np.zeros((data.shape[0], self.n_components))
        out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(data)
        # The widget runs a Gaussian KDE on each sample, which fails on a singular sample
        # (identical boxes, e.g. one image sent five times). A jitter far below the spread of
        # real embeddings keeps the picture drawable and changes no score.
        jitter = np.random.default_rng(0).normal(scale=1e-6, size=out.shape)
        return out + jitter


@contextmanager
def embedding_projection(kind: Literal["pca", "tsne"]) -> Iterator[None]:
    """Use ``kind`` for the 2-D view of EmbeddingsDrift while the context is open.

    Not thread-safe: it swaps a module attribute of Evidently for the duration.
    """
    from evidently.legacy.metrics.data_drift import embeddings_drift as module

    original = getattr(module, "TSNE", None)
    if kind == "tsne" or original is None:
        yield
        return
    setattr(module, "TSNE", _PcaProjection)  # noqa: B010 - the attribute is looked up at call time
    try:
        yield
    finally:
        setattr(module, "TSNE", original)  # noqa: B010

