"""Letterbox a batch of BGR images into the float32 NCHW input of the model.

Matches Ultralytics step for step: ``check_imgsz`` (the size rounded up to the stride),
``LetterBox`` with the predictor's arguments (minimum stride rectangle when every image of the
batch has the same shape and the model takes any shape, the square ``imgsz`` otherwise; centred,
padded with 114, ``cv2.INTER_LINEAR``), then ``BasePredictor.preprocess`` (HWC -> CHW, BGR -> RGB,
``/ 255`` in float32), so the input array, and thus the answer, is the same.

Example:
    >>> batch = to_batch([np.zeros((480, 640, 3), np.uint8)], (320, 320), stride=32, rect=True)
    >>> batch.shape
    (1, 3, 256, 320)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PAD_VALUE = 114


def check_imgsz(imgsz: int, stride: int) -> tuple[int, int]:
    """``imgsz`` rounded up to a multiple of ``stride``, as a (height, width) square."""
    size = max(math.ceil(imgsz / stride) * stride, stride)
    return size, size


def letterbox(
    image: np.ndarray, new_shape: tuple[int, int], *, auto: bool, stride: int
) -> np.ndarray:
    """Resize ``image`` keeping its aspect ratio and pad it to ``new_shape`` (or less, ``auto``).

    Args:
        image: BGR uint8, (H, W, 3).
        new_shape: the target (height, width).
        auto: pad only to the next multiple of ``stride`` (the minimum rectangle).
        stride: the model's stride.
    """
    shape = image.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = max(round(shape[1] * r), 1), max(round(shape[0] * r), 1)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    half_w, half_h = dw / 2, dh / 2
    top, bottom = round(half_h - 0.1), round(half_h + 0.1)
    left, right = round(half_w - 0.1), round(half_w + 0.1)
    if shape[::-1] != new_unpad:
        image = cv2.resize(image, new_unpad, interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(
        image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )


def to_batch(
    images: list[np.ndarray], imgsz: tuple[int, int], *, stride: int, rect: bool
) -> np.ndarray:
    """The model input for ``images``: float32 (N, 3, H, W), RGB in [0, 1].

    Args:
        images: decoded BGR uint8 images.
        imgsz: the serving size (a multiple of the stride).
        stride: the model's stride.
        rect: the model takes any input shape (a dynamic export); only then can a batch of one
            shape be letterboxed to its minimum rectangle.
    """
    auto = rect and len({im.shape for im in images}) == 1
    boxed = np.stack([letterbox(im, imgsz, auto=auto, stride=stride) for im in images])
    # BGR -> RGB and HWC -> CHW in one copy; float32 division by 255 as torch's div_(255).
    chw = np.ascontiguousarray(boxed[..., ::-1].transpose(0, 3, 1, 2))
    return chw.astype(np.float32) / np.float32(255)
