"""The PCA view swapped into Evidently's EmbeddingsDrift widget (reporting.projection)."""

from __future__ import annotations

import numpy as np

from reporting.projection import embedding_projection


def test_projection_swap_is_undone() -> None:
    from evidently.legacy.metrics.data_drift import embeddings_drift
    from sklearn.manifold import TSNE

    with embedding_projection("pca"):
        assert embeddings_drift.TSNE is not TSNE
    assert embeddings_drift.TSNE is TSNE





def test_pca_view_is_two_dimensional_and_drawable_for_identical_rows() -> None:
    from evidently.legacy.metrics.data_drift import embeddings_drift

    with embedding_projection("pca"):
        view = embeddings_drift.TSNE(n_components=2).fit_transform(np.ones((5, 8)))
    assert view.shape == (5, 2)
    assert np.isfinite(view).all() and view.std(axis=0).min() > 0, "jittered, so a KDE works"
