"""Boxes by hand: the annotation component, and the arithmetic between it and the gateway.

The feedback form is an annotation canvas: the user moves and resizes the predicted boxes,
deletes false ones, draws missed objects and sets each box's class. The canvas is
``streamlit-image-annotation``'s ``detection`` component, pinned to 0.8.0 in the ``webapp``
extra, because:

- it does exactly this job (a React + Konva canvas: select, drag, resize, delete, draw, a class
  list) and hands back plain JSON, so nothing of it leaks past this module;
- its built frontend ships inside the wheel (``Detection/frontend/build``: one HTML page, one JS
  bundle, Bootstrap's CSS), which Streamlit serves from the app's own port: no CDN, nothing
  fetched off the machine (``tests/browser/test_browser_offline.py``);
- it is maintained against current Streamlit (0.8.0 follows 1.49's ``LayoutConfig`` API), where
  ``streamlit-drawable-canvas`` 0.9.3, the older choice, no longer imports on Streamlit >= 1.41
  (its ``image_to_url`` moved; andfanilo/streamlit-drawable-canvas#156, unreleased fix);
- its one extra dependency, matplotlib, only picks box colours.

Its contract, and what this module does about it:

- Boxes go in and come out as ``[x, y, w, h]`` in the pixels of the picture it is given; edits
  come back only when the user presses *Complete* (or the space bar), and ``None`` before.
- It shrinks a large picture with one factor taken from the width (so heights drift by a
  rounding). We hand it a picture already sized by :func:`fit` instead, which it leaves alone,
  and scale each axis ourselves: what goes back to the gateway is in the image's own pixels,
  clipped to it (:meth:`Canvas.to_image`).
- Its colours come from a matplotlib colour map, not the contract's palette; the preview under
  it (``webapp.drawing``) shows the labels in the contract's colours.

Example:
    >>> canvas = fit((1280, 960))
    >>> (canvas.width, canvas.height)
    (640, 480)
    >>> canvas.to_display((100.0, 200.0, 300.0, 400.0))
    [50.0, 100.0, 100.0, 100.0]
    >>> canvas.to_image([600.0, 100.0, 100.0, 50.0])  # past the right edge: clipped
    (1200.0, 200.0, 1280.0, 300.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from streamlit_image_annotation import detection

from gateway_client import LabelBox

#: Longest side of the canvas, in screen pixels: YOLO's input size, and it fits a laptop screen
#: next to the component's class list.
MAX_SIDE = 640
#: Most a small image is enlarged: enough to grab a corner, not so much it turns to mush.
MAX_ZOOM = 4.0
#: Border width of the boxes on the canvas, in screen pixels.
LINE_WIDTH = 2.0

#: One box as the component hands it back.
ComponentBox = Mapping[str, Any]


@dataclass(frozen=True)
class Canvas:
    """The picture the component shows, and the image it stands for.

    Attributes:
        width: Canvas width in screen pixels.
        height: Canvas height in screen pixels.
        image_width: Width of the image the gateway measured (its own pixels).
        image_height: Height of the image the gateway measured.
    """

    width: int
    height: int
    image_width: int
    image_height: int

    @property
    def scale(self) -> tuple[float, float]:
        """Canvas pixels per image pixel, per axis."""
        return self.width / self.image_width, self.height / self.image_height

    def to_display(self, xyxy: Sequence[float]) -> list[float]:
        """Image-pixel corners -> the component's ``[x, y, w, h]`` in canvas pixels."""
        sx, sy = self.scale
        x1, y1, x2, y2 = xyxy
        return [x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy]

    def to_image(self, xywh: Sequence[float]) -> tuple[float, float, float, float] | None:
        """The component's ``[x, y, w, h]`` -> image-pixel corners, clipped to the image.

        A negative width or height (a box drawn right to left) is normalised first.

        Returns:
            ``(x1, y1, x2, y2)`` with ``0 <= x1 < x2 <= width`` (same for y), or ``None`` when
            nothing of the box is left inside the image.
        """
        sx, sy = self.scale
        x, y, w, h = (float(v) for v in xywh)
        xs = sorted((x / sx, (x + w) / sx))
        ys = sorted((y / sy, (y + h) / sy))
        x1, x2 = (min(max(v, 0.0), float(self.image_width)) for v in xs)
        y1, y2 = (min(max(v, 0.0), float(self.image_height)) for v in ys)
        if x2 <= x1 or y2 <= y1:
            return None
        return (x1, y1, x2, y2)


def fit(image_size: tuple[int, int], max_side: int = MAX_SIDE) -> Canvas:
    """The canvas for an image of ``image_size`` (width, height): at most ``max_side`` a side.

    The aspect ratio is kept (up to rounding, which :meth:`Canvas.to_image` undoes per axis);
    small images are enlarged up to :data:`MAX_ZOOM` so their boxes can still be grabbed.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {image_size}")
    factor = min(max_side / width, max_side / height, MAX_ZOOM)
    return Canvas(max(1, round(width * factor)), max(1, round(height * factor)), width, height)


def class_names(classes: Sequence[str], predicted: Iterable[str]) -> list[str]:
    """The component's class list: ``GET /models``' classes, then predicted names it lacks.

    A name the model gave but ``/models`` no longer lists (classes changed since) stays
    selectable, so confirming a prediction as it is is always possible.
    """
    names = list(classes)
    for name in predicted:
        if name not in names:
            names.append(name)
    return names


def to_component(
    boxes: Sequence[LabelBox], canvas: Canvas, names: Sequence[str]
) -> tuple[list[list[float]], list[int]]:
    """Boxes in image pixels -> the component's ``bboxes`` and ``labels`` (class indices)."""
    return [canvas.to_display(b.xyxy) for b in boxes], [names.index(b.name) for b in boxes]


def from_component(
    value: Sequence[ComponentBox], canvas: Canvas, names: Sequence[str]
) -> list[LabelBox]:
    """The component's boxes -> ground truth in image pixels, clipped to the image.

    A box with nothing left inside the image is dropped (the gateway would refuse it). The
    class is the box's ``label``; its ``label_id`` is the fallback.

    Raises:
        ValueError: A box names no class of ``names`` (the component only offers those).
    """
    labels: list[LabelBox] = []
    for item in value:
        name = str(item.get("label", ""))
        if name not in names:
            index = int(item.get("label_id", -1))
            if not 0 <= index < len(names):
                raise ValueError(f"the annotator returned an unknown class: {dict(item)!r}")
            name = names[index]
        xyxy = canvas.to_image(item["bbox"])
        if xyxy is not None:
            labels.append(LabelBox(xyxy, name))
    return labels


def annotate(
    picture: Image.Image,
    boxes: Sequence[LabelBox],
    names: Sequence[str],
    canvas: Canvas,
    key: str,
) -> list[LabelBox] | None:
    """Show the annotation canvas; the user's boxes once they pressed *Complete*, else ``None``.

    Args:
        picture: The image, in the orientation the boxes were measured in.
        boxes: The boxes the canvas starts with (image pixels).
        names: Every class the user may pick (:func:`class_names`).
        canvas: The canvas's size (:func:`fit` of the image's size).
        key: Streamlit key; a new key starts over from ``boxes``.
    """
    bboxes, labels = to_component(boxes, canvas, names)
    # Resized here (a copy): the component would shrink the caller's image in place, and by one
    # factor for both axes.
    shown = picture.resize((canvas.width, canvas.height), Image.Resampling.BILINEAR)
    value = detection(
        shown,
        list(names),
        bboxes=bboxes,
        labels=labels,
        height=canvas.height,
        width=canvas.width,
        line_width=LINE_WIDTH,
        use_space=True,
        key=key,
    )
    return None if value is None else from_component(value, canvas, names)
