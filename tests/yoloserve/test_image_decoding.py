"""The one image decoder (yoloserve.images): upright pixels, the header check, domain errors."""

from __future__ import annotations

import io
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.support import real_photos
from yoloserve.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from yoloserve.images import (
    FORMAT_EXTENSIONS,
    IMAGE_SUFFIXES,
    ImageInfo,
    decode_array,
    decode_rgb,
    inspect_image,
)

_ORIENTATION = 0x0112


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _sideways_jpeg() -> tuple[np.ndarray, bytes]:
    """A 10x20 image whose left quarter is white, stored with EXIF orientation 6."""
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255
    exif = Image.Exif()
    exif[_ORIENTATION] = 6  # "rotate 90 CW to view"
    return arr, _encode(Image.fromarray(arr), "JPEG", exif=exif, quality=95)


def _bomb() -> bytes:
    # Over twice Pillow's MAX_IMAGE_PIXELS (about 179 Mpx): refused at open, before decoding.
    # A 1-bit PNG of 15000x15000 is a few kilobytes.
    return _encode(Image.new("1", (15_000, 15_000)), "PNG")


@pytest.mark.parametrize(
    ("data", "max_pixels", "expected", "exception"),
    [
        (_encode(Image.new("RGB", (64, 48)), "PNG"), 10_000, ("PNG", 64, 48, "png"), nullcontext()),
        (_encode(Image.new("RGB", (8, 8)), "JPEG"), None, ("JPEG", 8, 8, "jpg"), nullcontext()),
        (_encode(Image.new("RGB", (8, 8)), "WEBP"), None, ("WEBP", 8, 8, "webp"), nullcontext()),
        (_encode(Image.new("RGB", (8, 8)), "BMP"), None, ("BMP", 8, 8, "bmp"), nullcontext()),
        (_encode(Image.new("RGB", (64, 48)), "PNG"), 3071, None, pytest.raises(ImageTooLarge)),
        (_encode(Image.new("RGB", (8, 8)), "GIF"), None, None,
         pytest.raises(UnsupportedImageFormat)),
        (_encode(Image.new("RGB", (8, 8)), "TIFF"), None, None,
         pytest.raises(UnsupportedImageFormat)),
        (b"definitely not an image", None, None, pytest.raises(InvalidImage)),
        (b"", None, None, pytest.raises(InvalidImage)),
        (_bomb(), None, None, pytest.raises(ImageTooLarge)),
    ],
)
def test_inspect_image(
    data: bytes,
    max_pixels: int | None,
    expected: tuple[str, int, int, str] | None,
    exception: AbstractContextManager[object],
) -> None:
    with exception:
        info = inspect_image(data, max_pixels)
        assert (info.format, info.width, info.height, info.extension) == expected


def test_supported_formats_and_extensions() -> None:
    assert dict(FORMAT_EXTENSIONS) == {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
    assert ImageInfo("JPEG", 1, 1).extension == "jpg"
    # Every stored copy's extension is one a folder listing picks up again.
    assert {f".{ext}" for ext in FORMAT_EXTENSIONS.values()} <= IMAGE_SUFFIXES


@pytest.mark.parametrize("decode", [decode_array, lambda data: np.asarray(decode_rgb(data))])
def test_decoders_apply_exif_orientation(decode: object) -> None:
    arr, sideways = _sideways_jpeg()
    assert callable(decode)
    upright = decode(sideways)
    assert upright.shape == (20, 10, 3)
    # Turned 90 CW: the white left quarter is now the top quarter.
    assert upright[:5].mean() > 200 and upright[5:].mean() < 50
    png = _encode(Image.fromarray(arr), "PNG")
    assert decode(png).tobytes() == arr.tobytes()


@pytest.mark.parametrize("decode", [decode_array, decode_rgb])
@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"definitely not an image", InvalidImage),
        (b"", InvalidImage),
        # A valid header with its pixel data cut off.
        (_encode(Image.new("RGB", (64, 64), (9, 99, 199)), "PNG")[:80], InvalidImage),
        (_bomb(), ImageTooLarge),
    ],
)
def test_decoders_raise_domain_errors(decode: object, data: bytes, error: type) -> None:
    assert callable(decode)
    with pytest.raises(error):
        decode(data)


def _variants() -> list[tuple[str, bytes]]:
    base = Image.linear_gradient("L").resize((24, 16)).convert("RGB")
    out: list[tuple[str, bytes]] = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        out.append((f"jpeg-exif{orientation}", _encode(base, "JPEG", exif=exif, quality=90)))
    for mode in ("RGB", "RGBA", "P", "L", "LA", "I;16"):
        out.append((f"png-{mode}", _encode(base.convert("L" if mode == "I;16" else mode)
                                           .convert(mode), "PNG")))
    out.append(("webp", _encode(base, "WEBP")))
    out.append(("bmp", _encode(base, "BMP")))
    return out


@pytest.mark.parametrize(("name", "data"), _variants(), ids=[name for name, _ in _variants()])
def test_fast_path_gives_the_pixels_of_exif_transpose_and_convert(name: str, data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    got = decode_array(data)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.array_equal(got, expected), name
    assert np.array_equal(np.asarray(decode_rgb(data)), expected), name


def test_real_photos_decode_like_pillow(tmp_path: Path) -> None:
    for name, path in real_photos(tmp_path).items():
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        assert np.array_equal(decode_array(data), expected), name
