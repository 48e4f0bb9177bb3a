"""The crop descriptor: a deterministic, detector-independent description of each box.

``describe()`` resamples each box with a context margin onto a small grid and computes HSV
histograms, Lab colour statistics of the whole crop, of its surroundings and of its centre, a
gradient-orientation histogram, texture and intensity statistics, and the box geometry. Nothing
comes from the detection network: a retrained YOLO model must not move the reference space.

Plain numpy, vectorised over boxes (the gateway image installs numpy and Pillow, not OpenCV).
Every reduction runs along a row's own axis (no BLAS matrix product), so a box gets
bit-identical numbers whether it is described alone or in a batch.

Example:
    >>> import numpy as np
    >>> image = np.zeros((48, 64, 3), dtype=np.uint8)
    >>> describe(image, [[10, 20, 30, 40]]).shape == (1, DescriptorParams().n_features)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DESCRIPTOR_NAME = "cropdesc"
# Bump whenever describe() changes what it computes: artifacts of another version are refused.
DESCRIPTOR_VERSION = 1
# Boxes per vectorised chunk: bounds the float64 working set to a few tens of MB.
_CHUNK = 256
_EPS = 1e-9


@dataclass(frozen=True)
class DescriptorParams:
    """How ``describe()`` samples and bins a box; stored in the artifact so it is reproducible.

    Attributes:
        size: side in pixels of the resampled context crop.
        supersample: samples per output pixel along each axis (averaged: a cheap anti-alias).
        margin: context added on each side of the box, as a fraction of its width/height.
        ring: width in crop pixels of the outer frame taken as the box's surroundings.
        hue_bins, sat_bins, val_bins: HSV histogram bins.
        grad_bins: unsigned gradient-orientation bins over 0..180 degrees.
        colour_levels: levels per RGB channel for the colour-entropy statistic.
    """

    size: int = 32
    supersample: int = 2
    margin: float = 0.25
    ring: int = 4
    hue_bins: int = 8
    sat_bins: int = 4
    val_bins: int = 4
    grad_bins: int = 8
    colour_levels: int = 4

    @property
    def n_features(self) -> int:
        """Length of the raw descriptor."""
        hists = self.hue_bins + self.sat_bins + self.val_bins + self.grad_bins
        # lab mean+std, ring lab mean + L std, centre/ring contrast, 2 gradient energies,
        # laplacian, 4 intensity stats, colour entropy, 2 geometry terms
        return hists + 6 + 4 + 1 + 2 + 1 + 4 + 1 + 2

    @property
    def inner(self) -> int:
        """Crop pixels between the crop edge and the box itself."""
        return int(round(self.size * self.margin / (1 + 2 * self.margin)))

    def validate(self) -> None:
        """Raise ``ValueError`` for parameters ``describe()`` cannot work with."""
        # supersample <= 16 keeps block sums of 0..255 inside uint16
        if self.size < 8 or not 1 <= self.supersample <= 16 or self.margin < 0:
            raise ValueError(f"invalid descriptor size/supersample/margin: {self}")
        if not 1 <= self.ring < self.size // 2 or not 0 <= self.inner < self.size // 2:
            raise ValueError(f"ring/inner region does not fit the crop: {self}")
        bins = (self.hue_bins, self.sat_bins, self.val_bins, self.grad_bins, self.colour_levels)
        if min(bins) < 2:
            raise ValueError(f"every histogram needs at least 2 bins: {self}")


def _srgb_to_linear_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR = _srgb_to_linear_lut()
# sRGB (D65) -> XYZ, rows already divided by the D65 white point so Lab needs no further scaling.
_RGB_TO_XYZ_N = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
) / np.array([0.95047, 1.0, 1.08883])[:, None]


def _as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be a sequence of [x1, y1, x2, y2], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("boxes contain non-finite coordinates")
    return arr


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("image must be a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be HxWx3 RGB, got shape {image.shape}")


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip xyxy boxes to the image and give each at least one pixel of width and height.

    Args:
        boxes: (n, 4) float array, xyxy in pixels (corners may be in any order).
        width, height: image size in pixels.

    Returns:
        A new (n, 4) array with ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``.
    """
    out = np.empty_like(boxes)
    for lo, hi, limit in ((0, 2, width), (1, 3, height)):
        a = np.clip(np.minimum(boxes[:, lo], boxes[:, hi]), 0, limit)
        b = np.clip(np.maximum(boxes[:, lo], boxes[:, hi]), 0, limit)
        # A degenerate box still gets one pixel, so its row exists and is finite.
        b = np.maximum(b, np.minimum(a + 1.0, limit))
        a = np.minimum(a, b - 1.0)
        out[:, lo], out[:, hi] = a, b
    return out


def _sample_crops(image: np.ndarray, boxes: np.ndarray, p: DescriptorParams) -> np.ndarray:
    """Resample each box plus its context margin onto a ``size`` x ``size`` grid.

    Nearest-neighbour samples on a supersampled grid, averaged in blocks (a cheap anti-alias),
    all boxes in one fancy index; context beyond the image edge repeats the edge pixels. Block
    sums are integers and rounded with integer arithmetic, so the result is exact.

    Returns:
        (3, n, size * size) int32 channel planes (R, G, B) in 0..255.
    """
    height, width = image.shape[:2]
    n, s, k = len(boxes), p.size, p.supersample
    t = (np.arange(s * k, dtype=np.float64) + 0.5) / (s * k)
    wh = boxes[:, 2:] - boxes[:, :2]
    # (n, 2, s*k) sample coordinates, x then y
    grid = np.floor((boxes[:, :2] - p.margin * wh)[:, :, None]
                    + t[None, None, :] * ((1 + 2 * p.margin) * wh)[:, :, None])
    xs = np.clip(grid[:, 0], 0, width - 1).astype(np.intp)
    ys = np.clip(grid[:, 1], 0, height - 1).astype(np.intp)
    # Index whole 3-byte pixels: fancy indexing with a trailing length-3 axis is ~10x slower.
    pixels = np.ascontiguousarray(image).view(np.dtype((np.void, 3)))[..., 0]
    samples = pixels[ys[:, :, None], xs[:, None, :]].view(np.uint8).reshape(n, s * k, s * k, 3)
    planes = np.ascontiguousarray(samples.transpose(3, 0, 1, 2), dtype=np.uint16)
    rows = planes[:, :, 0::k]
    for d in range(1, k):
        rows = rows + planes[:, :, d::k]
    total = rows[..., 0::k]
    for d in range(1, k):
        total = total + rows[..., d::k]
    return ((total.astype(np.int32) + (k * k) // 2) // (k * k)).reshape(3, n, s * s)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in [0, 1), saturation and value in [0, 1] of (3, ...) integer RGB in 0..255."""
    r, g, b = rgb
    v = rgb.max(axis=0)
    c = v - rgb.min(axis=0)
    inv_c = 1.0 / np.maximum(c, 1)
    hue = np.where(v == r, (g - b) * inv_c, np.where(v == g, (b - r) * inv_c + 2.0,
                                                     (r - g) * inv_c + 4.0))
    hue = np.where(c > 0, (hue % 6.0) / 6.0, 0.0)
    return hue, c / np.maximum(v, 1), v / 255.0


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of (3, ...) integer RGB in 0..255, as (3, ...) L, a, b; elementwise."""
    lin = _LINEAR[rgb]
    m = _RGB_TO_XYZ_N.reshape(3, 3, *([1] * (rgb.ndim - 1)))
    xyz = m[:, 0] * lin[0] + m[:, 1] * lin[1] + m[:, 2] * lin[2]
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _row_hist(values: np.ndarray, bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-row normalised histogram of (n, m) values in [0, 1] (weights optional)."""
    n = values.shape[0]
    idx = np.minimum((values * bins).astype(np.intp), bins - 1) + (np.arange(n) * bins)[:, None]
    w = None if weights is None else weights.ravel()
    counts = np.bincount(idx.ravel(), weights=w, minlength=n * bins).reshape(n, bins)
    return counts / (counts.sum(axis=1, keepdims=True) + _EPS)


def _mean_std(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations over the last axis, each of shape ``planes.shape[:-1]``."""
    mean = planes.mean(axis=-1)
    centred = planes - mean[..., None]
    return mean, np.sqrt((centred * centred).mean(axis=-1))


def describe(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    params: DescriptorParams | None = None,
) -> np.ndarray:
    """Raw, detector-independent descriptor of each box (before standardisation and PCA).

    Args:
        image: HxWx3 uint8 RGB.
        boxes: xyxy in pixels; clipped to the image first.
        params: sampling and binning; the defaults are those of descriptor version 1.

    Returns:
        (n, params.n_features) float64.

    Raises:
        ValueError: malformed image or boxes.
    """
    p = params or DescriptorParams()
    _check_image(image)
    raw = _as_boxes(boxes)
    height, width = image.shape[:2]
    out = np.empty((len(raw), p.n_features), dtype=np.float64)
    for start in range(0, len(raw), _CHUNK):
        chunk = clip_boxes(raw[start:start + _CHUNK], width, height)
        out[start:start + len(chunk)] = _describe_chunk(image, chunk, p)
    return out


def _describe_chunk(image: np.ndarray, boxes: np.ndarray, p: DescriptorParams) -> np.ndarray:
    n, s = len(boxes), p.size
    rgb = _sample_crops(image, boxes, p)  # (3, n, s*s)
    feats: list[np.ndarray] = []

    hue, sat, val = _hsv(rgb)
    # Hue is weighted by saturation: the hue of a grey pixel is noise, not colour.
    feats += [_row_hist(hue, p.hue_bins, sat), _row_hist(sat, p.sat_bins),
              _row_hist(val, p.val_bins)]

    lab = _lab(rgb)  # (3, n, s*s)
    mean, std = _mean_std(lab)
    ring_mask = np.ones((s, s), dtype=bool)
    ring_mask[p.ring:s - p.ring, p.ring:s - p.ring] = False
    centre_mask = np.zeros((s, s), dtype=bool)
    centre_mask[p.inner:s - p.inner, p.inner:s - p.inner] = True
    ring_mean, ring_std = _mean_std(lab[:, :, ring_mask.ravel()])  # the box's surroundings
    centre_mean = lab[:, :, centre_mask.ravel()].mean(axis=-1)
    contrast = np.sqrt(((centre_mean - ring_mean) ** 2).sum(axis=0))
    feats += [mean.T, std.T, ring_mean.T, ring_std[0][:, None], contrast[:, None]]

    light = lab[0].reshape(n, s, s)  # 0..100
    gx = light[:, 1:-1, 2:] - light[:, 1:-1, :-2]
    gy = light[:, 2:, 1:-1] - light[:, :-2, 1:-1]
    mag = np.sqrt(gx * gx + gy * gy).reshape(n, -1)
    angle = (np.arctan2(gy, gx).reshape(n, -1) % np.pi) / np.pi
    lap = (light[:, 1:-1, 2:] + light[:, 1:-1, :-2] + light[:, 2:, 1:-1] + light[:, :-2, 1:-1]
           - 4 * light[:, 1:-1, 1:-1]).reshape(n, -1)
    feats += [
        _row_hist(np.minimum(angle, 1.0 - _EPS), p.grad_bins, mag),
        np.log1p(mag.mean(axis=1))[:, None],
        np.log1p(mag[:, ring_mask[1:-1, 1:-1].ravel()].mean(axis=1))[:, None],
        np.log1p(np.abs(lap).mean(axis=1))[:, None],
    ]

    grey = lab[0] / 100.0
    grey_sorted = np.sort(grey, axis=1)
    m = grey.shape[1] - 1  # 10th and 90th percentiles, linear interpolation as numpy's default
    lo, hi = 0.1 * m, 0.9 * m
    pct = [grey_sorted[:, int(q)] + (q - int(q)) * (grey_sorted[:, int(q) + 1]
                                                    - grey_sorted[:, int(q)]) for q in (lo, hi)]
    feats += [mean[0][:, None] / 100.0, std[0][:, None] / 100.0, np.stack(pct, axis=1)]

    q = p.colour_levels
    codes = ((rgb[0] * q // 256) * q + rgb[1] * q // 256) * q + rgb[2] * q // 256
    colour_hist = np.bincount((codes + (np.arange(n) * q**3)[:, None]).ravel(),
                              minlength=n * q**3).reshape(n, q**3) / float(s * s)
    entropy = -(colour_hist * np.log(colour_hist + _EPS)).sum(axis=1)
    feats.append(entropy[:, None])

    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    img_area = float(image.shape[0] * image.shape[1])
    feats += [np.log(w / h)[:, None], (0.5 * np.log(w * h / img_area))[:, None]]
    return np.concatenate(feats, axis=1)
