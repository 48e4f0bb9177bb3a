"""Image bytes to BGR uint8, exactly as Ultralytics' ``imread`` reads a file.

``cv2.imdecode`` with ``IMREAD_COLOR`` applies the EXIF orientation of JPEGs and turns grey,
alpha and 16-bit images into 8-bit BGR; formats OpenCV cannot read go through PIL upright, as
Ultralytics' own PIL fallback does. Boxes are thus in the pixel grid of the upright image, the one
a browser shows.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps

from yolo_detector.requests import RequestError

UNDECODABLE = "not a decodable image (JPEG, PNG, WebP, BMP, TIFF, GIF, ...)"


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes to BGR uint8 of shape (H, W, 3).

    Args:
        data: the encoded image.
        max_pixels: refuse images with more pixels than this.

    Raises:
        RequestError: 415 when the bytes are no image, 413 when it is too large.
    """
    try:  # PIL reads only the header here: refuse decompression bombs before decoding them
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception:  # not every format OpenCV reads is known to PIL; the decoders decide
        width = height = 0
    if width * height > max_pixels:
        raise RequestError(413, "image_too_large", f"{width}x{height} exceeds {max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        try:
            with Image.open(io.BytesIO(data)) as pil:
                rgb = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
            image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        except Exception:  # every decoder failure means the same thing to the client
            raise RequestError(415, "invalid_image", UNDECODABLE) from None
    if image.ndim != 3 or image.shape[2] != 3 or not all(image.shape):
        raise RequestError(415, "invalid_image", f"unsupported image shape {image.shape}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise RequestError(413, "image_too_large", f"image exceeds {max_pixels} pixels")
    return image
