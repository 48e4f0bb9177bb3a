"""Fit the embedder's standardisation + PCA projection on the boxes of some images.

The only place that needs scikit-learn, imported when fitting starts: the gateway and the
feedback recorder load a fitted artifact (``Embedder.load``) and never import it.

Example:
    >>> import numpy as np
    >>> from yoloserve.training.dataset import iter_images
    >>> samples = [(np.asarray(img), [s.xyxy for s in shapes])
    ...            for img, shapes in iter_images(12, seed=3)]
    >>> fit_embedder(samples, dim=8, fitted_on="12 generated images").dim
    8
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import numpy as np

from yoloserve.embeddings.descriptor import DescriptorParams, describe
from yoloserve.embeddings.embedder import Embedder


def fit_embedder(
    samples: Iterable[tuple[np.ndarray, Sequence[Sequence[float]]]],
    *,
    dim: int = 24,
    fitted_on: str,
    params: DescriptorParams | None = None,
    progress: Callable[[int], None] | None = None,
) -> Embedder:
    """Fit the standardisation + PCA projection on the boxes of some images.

    Args:
        samples: (image, boxes) pairs, images HxWx3 uint8 RGB, boxes xyxy in pixels.
        dim: embedding length; at most the descriptor length and the number of boxes.
        fitted_on: human-readable description of the data, stored in the artifact.
        params: descriptor parameters (defaults of this descriptor version).
        progress: called with 1 after each image.

    Returns:
        The fitted embedder (call ``save`` to persist it).

    Raises:
        ValueError: too few boxes or ``dim`` too large.
    """
    from sklearn.decomposition import PCA  # fitting only: the gateway never imports sklearn
    from sklearn.preprocessing import StandardScaler

    p = params or DescriptorParams()
    p.validate()
    rows = []
    for image, boxes in samples:
        rows.append(describe(image, boxes, p))
        if progress:
            progress(1)
    x = np.concatenate(rows) if rows else np.zeros((0, p.n_features))
    if not 1 <= dim <= min(p.n_features, len(x)):
        raise ValueError(f"dim={dim} needs 1 <= dim <= min({p.n_features} features, "
                         f"{len(x)} boxes)")
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=dim, svd_solver="full").fit(scaler.transform(x))
    meta = {
        "fitted_on": fitted_on,
        "n_boxes": len(x),
        "explained_variance_ratio": [round(float(v), 6) for v in pca.explained_variance_ratio_],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return Embedder(scaler.mean_, scaler.scale_, pca.components_, pca.mean_, params=p, meta=meta)
