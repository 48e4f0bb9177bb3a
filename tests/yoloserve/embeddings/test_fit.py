"""Fitting the embedder (yoloserve.embeddings.fit): deterministic, saved and loaded intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yoloserve.embeddings.descriptor import DescriptorParams
from yoloserve.embeddings.embedder import Embedder
from yoloserve.embeddings.fit import fit_embedder
from yoloserve.training.dataset import iter_images


def test_fit_save_load_round_trip(tmp_path: Path) -> None:
    samples = [(np.asarray(img), [s.xyxy for s in shapes])
               for img, shapes in iter_images(12, seed=3)]
    fitted = fit_embedder(samples, dim=8, fitted_on="12 test images")
    path = fitted.save(tmp_path / "e.npz")
    loaded = Embedder.load(path)
    assert (loaded.dim, loaded.version) == (8, fitted.version)
    assert loaded.meta["fitted_on"] == "12 test images"
    image, boxes = samples[0]
    assert loaded.embed(image, boxes).tobytes() == fitted.embed(image, boxes).tobytes()
    # Fitting is deterministic: the same data gives the same version.
    assert fit_embedder(samples, dim=8, fitted_on="again").version == fitted.version
    with pytest.raises(ValueError):
        fit_embedder(samples[:1], dim=DescriptorParams().n_features + 1, fitted_on="x")
