"""The arithmetic between the annotation canvas and the gateway (``webapp.annotator``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from gateway_client import LabelBox
from webapp.annotator import (
    MAX_SIDE,
    MAX_ZOOM,
    Canvas,
    class_names,
    fit,
    from_component,
    to_component,
)

NAMES = ["circle", "square", "triangle"]


@pytest.mark.parametrize(
    ("size", "canvas", "raises"),
    [
        ((1280, 960), (640, 480), nullcontext()),  # large: shrunk to MAX_SIDE
        ((506, 587), (552, 640), nullcontext()),  # a tall sample: the height decides
        ((640, 640), (640, 640), nullcontext()),  # already the size: unchanged
        ((64, 48), (256, 192), nullcontext()),  # small: enlarged, at most MAX_ZOOM
        ((3000, 10), (640, 2), nullcontext()),  # a sliver keeps at least a pixel
        ((0, 10), None, pytest.raises(ValueError, match="positive")),
    ],
)
def test_fit(
    size: tuple[int, int], canvas: tuple[int, int] | None, raises: AbstractContextManager[Any]
) -> None:
    with raises:
        got = fit(size)
        assert (got.width, got.height) == canvas
        assert (got.image_width, got.image_height) == size
        assert max(got.width, got.height) <= MAX_SIDE
        assert got.width <= size[0] * MAX_ZOOM


def test_display_and_back_is_the_same_box_per_axis() -> None:
    # 506x587 -> 552x640: the axes' factors differ by the rounding; each is undone on its own.
    canvas = fit((506, 587))
    xyxy = (120.5, 186.25, 227.4, 268.6)
    back = canvas.to_image(canvas.to_display(xyxy))
    assert back == pytest.approx(xyxy, abs=1e-9)


@pytest.mark.parametrize(
    ("xywh", "xyxy"),
    [
        ([40.0, 20.0, 80.0, 40.0], (20.0, 10.0, 60.0, 30.0)),  # inside: only scaled
        ([180.0, -20.0, 40.0, 60.0], (90.0, 0.0, 100.0, 20.0)),  # over two edges: clipped
        ([100.0, 60.0, -40.0, -20.0], (30.0, 20.0, 50.0, 30.0)),  # drawn backwards
        ([-30.0, 10.0, 240.0, 200.0], (0.0, 5.0, 100.0, 50.0)),  # larger than the image
        ([210.0, 10.0, 20.0, 20.0], None),  # wholly right of the image
        ([10.0, 100.0, 20.0, 0.0], None),  # on the bottom edge: no area left
    ],
)
def test_to_image_scales_and_clips(xywh: list[float], xyxy: tuple[float, ...] | None) -> None:
    canvas = Canvas(width=200, height=100, image_width=100, image_height=50)
    assert canvas.to_image(xywh) == xyxy


def test_class_names_keep_the_models_order_and_add_stale_predicted_names() -> None:
    assert class_names(NAMES, ["triangle", "hexagon", "circle", "hexagon"]) == [*NAMES, "hexagon"]
    assert class_names(NAMES, []) == NAMES


def test_to_component_gives_display_boxes_and_class_indices() -> None:
    canvas = Canvas(width=128, height=96, image_width=64, image_height=48)
    boxes = [LabelBox((10.0, 8.0, 30.0, 28.0), "triangle"), LabelBox((1, 2, 3, 4), "circle")]
    assert to_component(boxes, canvas, NAMES) == (
        [[20.0, 16.0, 40.0, 40.0], [2.0, 4.0, 4.0, 4.0]],
        [2, 0],
    )


def test_from_component_maps_classes_scales_clips_and_drops() -> None:
    canvas = Canvas(width=128, height=96, image_width=64, image_height=48)
    value = [
        {"bbox": [20.0, 16.0, 40.0, 40.0], "label_id": 1, "label": "square"},
        {"bbox": [120.0, 80.0, 30.0, 30.0], "label_id": 0, "label": "circle"},  # clipped
        {"bbox": [130.0, 10.0, 10.0, 10.0], "label_id": 2, "label": "triangle"},  # outside
        {"bbox": [0.0, 0.0, 10.0, 10.0], "label_id": 2},  # no name: by its index
    ]
    assert from_component(value, canvas, NAMES) == [
        LabelBox((10.0, 8.0, 30.0, 28.0), "square"),
        LabelBox((60.0, 40.0, 64.0, 48.0), "circle"),
        LabelBox((0.0, 0.0, 5.0, 5.0), "triangle"),
    ]
    assert from_component([], canvas, NAMES) == []  # everything deleted: nothing to detect


def test_from_component_refuses_a_class_it_never_offered() -> None:
    canvas = Canvas(width=64, height=48, image_width=64, image_height=48)
    with pytest.raises(ValueError, match="unknown class"):
        from_component([{"bbox": [0, 0, 5, 5], "label_id": 7, "label": "hexagon"}], canvas, NAMES)
