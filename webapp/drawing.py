"""Draw boxes on an image with PIL, from the coordinates ``/predict`` answered.

Drawing here rather than calling ``/predict/image`` keeps one round trip per detection: the
JSON already carries everything (boxes, request id for feedback), and the same code draws the
user's corrected labels as a preview before they are sent.

Colours follow the contract's palette (``docs/api-contract.md``, "Box colours"): by class index,
as ``POST /predict/image`` draws them, so a class looks the same in the app and in the API's
images. The web app imports nothing of the gateway, so the list is copied here; a test checks
that both copies and the contract's table are the same.

Example:
    >>> from PIL import UnidentifiedImageError, Image
    >>> image = Image.new("RGB", (64, 48))
    >>> out = draw_boxes(image, [Annotation((4, 4, 40, 30), "circle 0.91", 0)])
    >>> out.size
    (64, 48)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

#: The contract's palette: distinct, saturated colours that stay readable on photos.
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


@dataclass(frozen=True)
class Annotation:
    """One box to draw.

    Attributes:
        xyxy: Corners in the pixel coordinates the gateway uses.
        label: Text written above the box (e.g. ``"triangle 0.97"``).
        cls: Class index, which decides the colour (the index in ``GET /models``'s classes).
    """

    xyxy: tuple[float, float, float, float]
    label: str
    cls: int


def color_for(cls: int) -> tuple[int, int, int]:
    """The colour of class index ``cls``: ``PALETTE[cls % len(PALETTE)]``, as the contract says."""
    return PALETTE[cls % len(PALETTE)]


def text_color_on(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow ships a scalable default font; the bitmap fallback only matters without FreeType.
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError):
        return ImageFont.load_default()


def load_image(data: bytes, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode image bytes to RGB, in the orientation the gateway measured the boxes in.

    A JPEG with an EXIF orientation tag has two possible pixel grids. Decoders disagree on which
    one to use (OpenCV rotates, PIL does not), so when the gateway's reported size matches only
    the rotated grid, the image is rotated to match the boxes.

    Args:
        data: The image file's bytes.
        expected_size: ``(width, height)`` the gateway reported, if known.

    Returns:
        The decoded RGB image.

    Raises:
        PIL.UnidentifiedImageError: ``data`` is not an image PIL can read.
    """
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except ImportError as exc:
        # Ultralytics, when imported in the same process, patches Image.open to try an optional
        # HEIF plugin on unreadable bytes; that is still "not an image" to us.
        raise UnidentifiedImageError("cannot identify image file") from exc
    image.load()
    if expected_size is not None and image.size != expected_size:
        rotated = ImageOps.exif_transpose(image)
        if rotated.size == expected_size:
            image = rotated
    return image.convert("RGB")


def draw_boxes(
    image: Image.Image,
    annotations: Sequence[Annotation],
    *,
    source_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with each annotation drawn as a labelled rectangle.

    Args:
        image: The picture to draw on (not modified).
        annotations: Boxes to draw, in ``source_size`` pixel coordinates.
        source_size: ``(width, height)`` the coordinates refer to; when it differs from the
            image's size the boxes are scaled, so they still land on the right objects.

    Returns:
        A new RGB image.
    """
    out = image.convert("RGB")  # convert() copies, so the caller's image stays clean
    width, height = out.size
    sx = width / source_size[0] if source_size and source_size[0] else 1.0
    sy = height / source_size[1] if source_size and source_size[1] else 1.0
    # Line and text grow with the picture, so boxes stay visible on large photos.
    line = max(2, round(min(width, height) / 250))
    font = _font(max(14, round(min(width, height) / 30)))
    draw = ImageDraw.Draw(out)
    for ann in annotations:
        x1, y1, x2, y2 = ann.xyxy
        box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        color = color_for(ann.cls)
        draw.rectangle(box, outline=color, width=line)
        if not ann.label:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), ann.label, font=font)
        text_w, text_h = right - left, bottom - top
        pad = 2
        # Above the box when there is room, inside it otherwise (objects touching the top edge).
        label_top = box[1] - text_h - 2 * pad
        if label_top < 0:
            label_top = box[1]
        origin = (box[0], label_top)
        draw.rectangle(
            (origin[0], origin[1], origin[0] + text_w + 2 * pad, origin[1] + text_h + 2 * pad),
            fill=color,
        )
        draw.text(
            (origin[0] + pad - left, origin[1] + pad - top),
            ann.label,
            fill=text_color_on(color),
            font=font,
        )
    return out
