"""Drawing boxes for the gateway's ``POST /predict/image``, with Pillow only.

Boxes refer to the upright pixel grid (EXIF orientation applied) that
``yoloserve.images.decode_rgb`` gives, the one a browser shows, so drawing uses it too. Box
colours follow the contract's palette, by class index.

Example:
    >>> from PIL import Image
    >>> from yoloserve.schemas import Box
    >>> box = Box(xyxy=[4, 4, 40, 30], conf=0.9, cls=1, name="square")
    >>> draw_boxes(Image.new("RGB", (64, 48)), [box])[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from yoloserve.schemas import Box

OutputFormat = Literal["png", "jpeg"]

# The contract's palette (docs/api-contract.md, "Box colours"): class index picks one. The web
# app keeps its own copy (webapp/drawing.py), so a test checks both against the contract's table.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 56, 56),
    (50, 205, 50),
    (0, 147, 255),
    (255, 157, 151),
    (255, 178, 29),
    (207, 210, 49),
    (72, 249, 10),
    (26, 147, 52),
    (0, 212, 187),
    (44, 153, 168),
    (132, 56, 255),
    (255, 55, 199),
)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError, TypeError):
        # Without FreeType, Pillow has only its fixed bitmap font.
        return ImageFont.load_default()


def color_for(cls: int) -> tuple[int, int, int]:
    """The colour of class index ``cls``: ``PALETTE[cls % len(PALETTE)]``, as the contract says."""
    return PALETTE[cls % len(PALETTE)]


def text_color_on(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white label text, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_boxes(image: Image.Image, boxes: Sequence[Box], fmt: OutputFormat = "png") -> bytes:
    """Draw boxes with ``name conf`` labels and encode the result.

    Args:
        image: RGB image the boxes refer to (it is drawn on in place).
        boxes: Detections in that image's pixel coordinates.
        fmt: ``png`` or ``jpeg``.

    Returns:
        The encoded image.
    """
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 200))
    font = _font(max(12, round(min(image.size) / 30)))
    for box in boxes:
        color = color_for(box.cls)
        x1, y1, x2, y2 = box.xyxy
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        label = f"{box.name} {box.conf:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        # Above the box when it fits, inside its top edge otherwise.
        y_text = y1 - text_h - 2 * line if y1 - text_h - 2 * line >= 0 else y1
        draw.rectangle((x1, y_text, x1 + text_w + 2 * line, y_text + text_h + 2 * line), fill=color)
        draw.text(
            (x1 + line - left, y_text + line - top), label, fill=text_color_on(color), font=font
        )
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
