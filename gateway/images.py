"""Image checks and drawing for the gateway, with Pillow only.

The gateway sniffs uploads itself (cheap: Pillow reads the header only) so that a non-image is a
415 without a round trip to the model server, and a decompression bomb never reaches it.

Images are decoded upright (EXIF orientation applied), as the handler and
``yoloserve.embeddings.embedder.decode_image`` decode them: boxes refer to that pixel grid,
the one a browser shows, so drawing uses it too. Box colours follow the contract's palette, by
class index.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (64, 48)).save(buffer, format="PNG")
    >>> inspect_image(buffer.getvalue(), max_pixels=10_000)
    ImageInfo(format='PNG', width=64, height=48)
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from yoloserve.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from yoloserve.schemas import Box

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
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


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an upload says."""

    format: str
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, ImportError) as exc:
        # ImportError: once Ultralytics is imported in the process it patches Image.open, and
        # bytes that are no image then fail on a missing optional HEIF plugin instead.
        raise InvalidImage("the upload is not an image Pillow can read") from exc


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a supported image of acceptable size, reading the header only.

    Args:
        data: The uploaded bytes.
        max_pixels: Largest accepted ``width * height``.

    Returns:
        Format and size.

    Raises:
        InvalidImage: Not an image.
        UnsupportedImageFormat: An image, but not JPEG, PNG, WebP or BMP.
        ImageTooLarge: More pixels than ``max_pixels``.
    """
    if not data:
        raise InvalidImage("the upload is empty")
    with _open(data) as image:
        info = ImageInfo(format=str(image.format), width=image.width, height=image.height)
    if info.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormat(f"{info.format} is not supported; send JPEG, PNG, WebP or BMP")
    if info.width * info.height > max_pixels:
        raise ImageTooLarge(
            f"{info.width}x{info.height} is more than the {max_pixels} pixels allowed"
        )
    return info


def decode_rgb(data: bytes) -> Image.Image:
    """Decode fully to an upright RGB image.

    Raises:
        InvalidImage: The header was fine but the pixel data is not (truncated file...).
    """
    with _open(data) as image:
        try:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage(f"the image cannot be decoded: {exc}") from exc


def decode_array(data: bytes) -> np.ndarray:
    """Decode to the HxWx3 uint8 RGB array ``Embedder.embed`` takes (upright, as above)."""
    return np.asarray(decode_rgb(data), dtype=np.uint8)


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
