"""What the benchmark sends: seeded bench images and the labels of feedback uploads.

``bench_image`` is the synthetic image of the serving and hot-swap sections (a generated shapes
scene, square, JPEG); ``bench_photos`` the real photos of the serving section (a JPEG and a PNG
bundled with scikit-image); ``feedback_boxes`` turns a generated image's true shapes into the
``boxes`` of ``POST /feedback``; ``grid_boxes`` makes dense labels (many disjoint boxes) for a
write-load test.

Example:
    >>> [box["name"] for box in grid_boxes(100, 100, 3, ["circle", "square"])]
    ['circle', 'square', 'circle']
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yoloserve.training.dataset import Shape, iter_images

IMAGE_SEED = 2024


def bench_image(size: int, seed: int = IMAGE_SEED, quality: int = 90) -> bytes:
    """A seeded synthetic shapes scene resized to ``size`` x ``size``, as JPEG bytes.

    Square on purpose: a square image letterboxes to the full ``imgsz`` square, the most
    expensive input shape, so the figures do not depend on the aspect ratio of one sample.
    """
    from PIL import Image

    image, _ = next(iter_images(1, seed))
    buffer = io.BytesIO()
    image.resize((size, size), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# Real photos users send, as they come from a camera or a screenshot tool: no resize, no
# re-encode. PNG costs more than JPEG to decode, at every hop that decodes it.
PHOTOS = {"photo JPEG": "rocket.jpg", "photo PNG": "coffee.png"}


def bench_photos(folder: Path) -> dict[str, Path]:
    """The real photos, copied into ``folder``: label -> file (640x427 JPEG, 600x400 PNG)."""
    import skimage

    bundled = Path(skimage.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for label, name in PHOTOS.items():
        out[label] = folder / name
        shutil.copyfile(bundled / name, out[label])
    return out


def feedback_boxes(shapes: Sequence[Shape]) -> list[dict[str, Any]]:
    """Ground-truth shapes of a generated image as the ``boxes`` of ``POST /feedback``."""
    return [{"xyxy": [round(v, 2) for v in s.xyxy], "name": s.name} for s in shapes]


def grid_boxes(width: int, height: int, n: int, names: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` disjoint boxes tiling the image in a near-square grid, class names in turn.

    Dense labels for a feedback load test: each box becomes one row of ``prod_data.csv``.
    """
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    w, h = width / cols, height / rows
    out = []
    for k in range(n):
        r, c = divmod(k, cols)
        # A 1 px margin keeps neighbours from touching (IoU 0 between any two of them).
        xyxy = [c * w + 1, r * h + 1, (c + 1) * w - 1, (r + 1) * h - 1]
        out.append({"xyxy": [round(v, 2) for v in xyxy], "name": names[k % len(names)]})
    return out
