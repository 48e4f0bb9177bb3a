"""Fixtures of the embedding tests."""

from __future__ import annotations

import numpy as np
import pytest

from yoloserve.training.dataset import iter_images


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    img, shapes = next(iter_images(1, seed=5))
    return np.asarray(img), [s.xyxy for s in shapes]
