"""The crop descriptor (yoloserve.embeddings.descriptor): parameters, clipping, stability."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import pytest

from yoloserve.embeddings.descriptor import DescriptorParams, clip_boxes, describe


def test_descriptor_is_detector_independent_and_stable(scene: tuple) -> None:
    image, boxes = scene
    raw = describe(image, boxes)
    assert raw.shape == (len(boxes), DescriptorParams().n_features)
    assert raw.tobytes() == describe(image, boxes).tobytes()


@pytest.mark.parametrize(
    ("params", "exception"),
    [
        (DescriptorParams(), nullcontext()),
        (DescriptorParams(size=4), pytest.raises(ValueError, match="size")),
        (DescriptorParams(supersample=17), pytest.raises(ValueError, match="supersample")),
        (DescriptorParams(ring=16), pytest.raises(ValueError, match="ring")),
        (DescriptorParams(hue_bins=1), pytest.raises(ValueError, match="bins")),
    ],
)
def test_params_validation(
    params: DescriptorParams, exception: AbstractContextManager[object]
) -> None:
    with exception:
        params.validate()


def test_clip_boxes_orders_corners_and_keeps_one_pixel() -> None:
    boxes = np.array([[5, 5, 5, 5], [30, 40, 10, 20], [-5, -5, 200, 200], [100, 50, 120, 60]],
                     dtype=np.float64)
    expected = [[5, 5, 6, 6], [10, 20, 30, 40], [0, 0, 100, 50], [99, 49, 100, 50]]
    assert clip_boxes(boxes, width=100, height=50).tolist() == expected
