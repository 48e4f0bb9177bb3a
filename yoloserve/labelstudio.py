"""Label Studio's data shapes, without Label Studio: labeling configs and ``rectanglelabels``.

Label Studio states boxes as ``{"x", "y", "width", "height"}`` in percent of the image (top-left
corner, ``rotation`` in degrees around it); the platform's boxes are ``xyxy`` pixels. A project's
labeling config (XML) names the control (``from_name``), the image it labels (``to_name``), the
task field with the image's URL (``value="$image"``) and the label values. Used by the gateway's
ML backend (``gateway.labelstudio``) and ``python -m scripts.labelstudio config``.

Pure standard library: the XML is parsed with ``xml.etree`` (expat >= 2.4.1 refuses entity
expansion bombs; external entities are never fetched) after a size check.

Example:
    >>> target = parse_config(labeling_config(["circle", "square"]))
    >>> target.from_name, target.to_name, target.value_key, target.labels
    ('label', 'image', 'image', ('circle', 'square'))
    >>> rect = to_rectangle((10.0, 20.0, 60.0, 70.0), 200, 100)
    >>> rect["x"], rect["y"], rect["width"], rect["height"]
    (5.0, 20.0, 25.0, 50.0)
    >>> from_rectangle(rect, 200, 100)
    (10.0, 20.0, 60.0, 70.0)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

MAX_CONFIG_CHARS = 200_000
RECTANGLE = "rectanglelabels"

XYXY = tuple[float, float, float, float]


class LabelConfigError(ValueError):
    """The labeling config is not XML, or has no ``RectangleLabels`` on an ``Image``."""


@dataclass(frozen=True)
class RectangleTarget:
    """Where boxes go in a project: the control, its image, the image's task field, its labels.

    Attributes:
        from_name: The ``RectangleLabels`` tag's ``name``.
        to_name: The ``Image`` tag it labels (its ``toName``).
        value_key: The task data field holding the image (``value="$image"`` -> ``image``).
        labels: The label values, in the config's order (``Label value=...``).
    """

    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]


def labeling_config(classes: Sequence[str], *, from_name: str = "label",
                    to_name: str = "image", value_key: str = "image") -> str:
    """The labeling config of a project that labels the model's classes as boxes."""
    labels = "\n".join(f"    <Label value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + value_key)}/>\n"
        f"  <RectangleLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>\n"
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def parse_config(xml: str) -> RectangleTarget:
    """The first ``RectangleLabels`` of ``xml`` and the ``Image`` it labels.

    Raises:
        LabelConfigError: Too long, not XML, or no ``RectangleLabels`` tied to an ``Image``.
    """
    if len(xml) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"the labeling config is over {MAX_CONFIG_CHARS} characters")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the labeling config is not XML: {exc}") from exc
    images = {tag.get("name"): tag.get("value", "") for tag in root.iter("Image")}
    for control in root.iter("RectangleLabels"):
        to_name = control.get("toName", "")
        value = images.get(to_name)
        if value is None or not value.startswith("$") or not control.get("name"):
            continue
        labels = tuple(label.get("value", "") for label in control.iter("Label"))
        return RectangleTarget(str(control.get("name")), to_name, value[1:], labels)
    raise LabelConfigError(
        "the labeling config has no <RectangleLabels> whose toName is an <Image> with "
        'value="$field"; generate one with `python -m scripts.labelstudio config`'
    )


def to_rectangle(xyxy: XYXY | Sequence[float], width: int, height: int) -> dict[str, Any]:
    """A pixel box as Label Studio's ``value`` (percent of ``width`` x ``height``)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return {
        "x": 100.0 * x1 / width,
        "y": 100.0 * y1 / height,
        "width": 100.0 * (x2 - x1) / width,
        "height": 100.0 * (y2 - y1) / height,
        "rotation": 0,
    }


def from_rectangle(value: Mapping[str, Any], width: int, height: int) -> XYXY:
    """Label Studio's ``value`` as a pixel box; a rotated one becomes its enclosing box.

    Raises:
        ValueError: ``x``, ``y``, ``width`` or ``height`` missing or not a finite number.
    """
    try:
        x, y, w, h = (float(value[key]) for key in ("x", "y", "width", "height"))
        angle = math.radians(float(value.get("rotation") or 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a rectangle needs numeric x, y, width and height: {exc}") from exc
    if not all(math.isfinite(v) for v in (x, y, w, h, angle)):
        raise ValueError("a rectangle's x, y, width and height must be finite")
    # Label Studio rotates around the top-left corner, in percent units of each axis: turn
    # to pixels first, or a rotated box on a non-square image would shear.
    px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(px + dx * cos - dy * sin, py + dx * sin + dy * cos)
               for dx, dy in ((0, 0), (pw, 0), (pw, ph), (0, ph))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return (_round(min(xs)), _round(min(ys)), _round(max(xs)), _round(max(ys)))


def _round(v: float) -> float:
    # Percent values rarely map back to whole pixels exactly (10 px of 200 is 4.999...%).
    return round(v, 3)
