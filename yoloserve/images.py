"""The one image decoder of the shared package: open, check, decode upright, with Pillow only.

Every service that reads uploaded or stored image bytes goes through here (the gateway's upload
check and drawing, the embedder's reference and production rows, the feedback recorder), so a
non-image, a decompression bomb or an unsupported format is the same domain error everywhere
(``yoloserve.errors``): ``InvalidImage``, ``ImageTooLarge``, ``UnsupportedImageFormat``. Only
``serving/handler.py`` keeps its own decoder: it runs alone inside TorchServe's worker.

Images are decoded upright (EXIF orientation applied), as Ultralytics does when it trains and
predicts and as the handler does: boxes refer to that pixel grid, the one a browser shows.

Example:
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (64, 48)).save(buffer, format="PNG")
    >>> info = inspect_image(buffer.getvalue(), max_pixels=10_000)
    >>> info, info.extension
    (ImageInfo(format='PNG', width=64, height=48), 'png')
    >>> decode_array(buffer.getvalue()).shape
    (48, 64, 3)
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageOps

from yoloserve.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

# Pillow format name -> file extension of a stored copy: the formats the API accepts.
FORMAT_EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
)
SUPPORTED_FORMATS = frozenset(FORMAT_EXTENSIONS)
# File suffixes taken for images when a folder is listed (datasets, feedback): ``.jpeg`` too.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

_ORIENTATION = 0x0112  # the EXIF tag exif_transpose acts on
# ImportError: once Ultralytics is imported in the process it patches Image.open, which then
# tries to import pi_heif for bytes Pillow cannot identify (and fails without it). SyntaxError:
# what some Pillow plugins raise on a corrupt header or truncated pixel data.
_UNREADABLE = (OSError, SyntaxError, ValueError, ImportError)


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says.

    Attributes:
        format: Pillow's format name (``JPEG``, ``PNG``, ``WEBP``, ``BMP``).
        width: Stored width in pixels (before any EXIF turn).
        height: Stored height in pixels.
    """

    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """File extension of a stored copy (``jpg``, ``png``, ``webp``, ``bmp``)."""
        return FORMAT_EXTENSIONS[self.format]


def open_image(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header read, pixels not yet decoded).

    Use it as a context manager, as ``Image.open``.

    Raises:
        InvalidImage: Empty, or not an image Pillow can read.
        ImageTooLarge: More pixels than Pillow's decompression-bomb limit allows.
    """
    if not data:
        raise InvalidImage("the image is empty")
    try:
        with warnings.catch_warnings():
            # The caller's pixel limit decides; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _UNREADABLE as exc:
        raise InvalidImage("the bytes are not an image Pillow can read") from exc


def inspect_image(data: bytes, max_pixels: int | None = None) -> ImageInfo:
    """Check that ``data`` is a supported image of acceptable size, reading the header only.

    Args:
        data: The image bytes.
        max_pixels: Largest accepted ``width * height``; None leaves it to Pillow's
            decompression-bomb limit.

    Returns:
        Format and size.

    Raises:
        InvalidImage: Not an image.
        UnsupportedImageFormat: An image, but not JPEG, PNG, WebP or BMP.
        ImageTooLarge: More pixels than ``max_pixels``.
    """
    with open_image(data) as image:
        info = ImageInfo(format=str(image.format), width=image.width, height=image.height)
    if info.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormat(f"{info.format} is not supported; send JPEG, PNG, WebP or BMP")
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise ImageTooLarge(
            f"{info.width}x{info.height} is more than the {max_pixels} pixels allowed"
        )
    return info


def decode_rgb(data: bytes) -> Image.Image:
    """Decode fully to an upright RGB image of its own (safe to draw on).

    Raises:
        InvalidImage: Not an image, or the header was fine but the pixel data is not
            (truncated file...).
        ImageTooLarge: More pixels than Pillow's decompression-bomb limit allows.
    """
    with open_image(data) as image:
        try:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
        except _UNREADABLE as exc:
            raise InvalidImage(f"the image cannot be decoded: {exc}") from exc


def decode_array(data: bytes) -> np.ndarray:
    """Decode to the upright HxWx3 uint8 RGB array ``Embedder.embed`` takes.

    The same pixels as ``np.asarray(decode_rgb(data))``, without the two copies
    ``exif_transpose`` and ``convert`` make when there is nothing to turn or convert (the usual
    upload): this runs once per embedded prediction or feedback.

    Raises:
        InvalidImage: Not an image, or its pixel data cannot be decoded.
        ImageTooLarge: More pixels than Pillow's decompression-bomb limit allows.
    """
    with open_image(data) as image:
        try:
            image.load()
            turned = image.getexif().get(_ORIENTATION, 1) != 1
            upright = ImageOps.exif_transpose(image) if turned else image
            rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
        except _UNREADABLE as exc:
            raise InvalidImage(f"the image cannot be decoded: {exc}") from exc
