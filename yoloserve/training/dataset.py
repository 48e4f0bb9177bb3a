"""Synthetic shape-detection dataset in YOLO format, fully seeded.

No data can be downloaded on the machines this platform targets, so the default model is trained
on images we draw ourselves: filled circles, squares and triangles in random colours, sizes and
rotations, on varied backgrounds (flat, gradient, noise, stripes). ``background="photo"`` puts the
same shapes on real photographs (scikit-image's bundled samples), and ``opacity`` below 1 draws
them translucent, so the photo shows through (prints and stickers seen by a camera): together they
are the production shift the drift scenario (``scripts/scenario/``) sends.

Example:
    >>> from pathlib import Path
    >>> from yoloserve.training.dataset import generate_dataset
    >>> yaml_path = generate_dataset(Path("/tmp/shapes"), n_train=8, n_val=2, n_test=2, seed=0)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from PIL import Image, ImageDraw

from yoloserve.boxes import iou, yolo_label_line

CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
Background = Literal["synthetic", "photo"]


@dataclass(frozen=True)
class Shape:
    """One drawn object: class index and its tight box in pixels (x1, y1, x2, y2)."""

    cls: int
    xyxy: tuple[float, float, float, float]

    @property
    def name(self) -> str:
        return CLASSES[self.cls]


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def _contrasting_colour(rng: random.Random, bg_mean: np.ndarray) -> tuple[int, int, int]:
    # A shape that melts into the background is unlabelable noise, not a harder example.
    for _ in range(50):
        colour = _random_colour(rng)
        if np.abs(np.array(colour, dtype=float) - bg_mean).sum() > 150:
            return colour
    return tuple(int(255 - v) for v in bg_mean)  # type: ignore[return-value]


def _synthetic_background(rng: random.Random, width: int, height: int) -> Image.Image:
    kind = rng.choice(("flat", "gradient", "noise", "stripes"))
    nprng = np.random.default_rng(rng.randint(0, 2**31))
    if kind == "flat":
        arr = np.zeros((height, width, 3), dtype=np.float32) + np.array(_random_colour(rng))
    elif kind == "gradient":
        a, b = np.array(_random_colour(rng)), np.array(_random_colour(rng))
        t = np.linspace(0.0, 1.0, width if rng.random() < 0.5 else height)
        ramp = a[None, :] * (1 - t[:, None]) + b[None, :] * t[:, None]
        arr = (
            np.broadcast_to(ramp[None, :, :], (height, width, 3))
            if len(t) == width
            else np.broadcast_to(ramp[:, None, :], (height, width, 3))
        ).astype(np.float32)
    elif kind == "noise":
        base = np.array(_random_colour(rng), dtype=np.float32)
        arr = base + nprng.normal(0, 40, size=(height, width, 3))
    else:
        a, b = np.array(_random_colour(rng)), np.array(_random_colour(rng))
        period = rng.randint(8, 40)
        stripes = (np.arange(width if rng.random() < 0.5 else height) // period) % 2
        mask = stripes[None, :] if len(stripes) == width else stripes[:, None]
        mask = np.broadcast_to(mask, (height, width))[..., None]
        arr = np.where(mask == 1, a, b).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _photo_backgrounds() -> list[np.ndarray]:
    """Real photos shipped inside scikit-image's wheel (no download)."""
    from skimage import data as skdata  # heavy, and only the drift scenario needs it

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel"):
        try:
            img = getattr(skdata, name)()
        except Exception:  # a sample missing from this scikit-image build is simply skipped
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        photos.append(img[..., :3].astype(np.uint8))
    if not photos:
        raise RuntimeError("scikit-image ships no sample photos in this install")
    return photos


def _photo_background(
    rng: random.Random, width: int, height: int, photos: list[np.ndarray]
) -> Image.Image:
    photo = Image.fromarray(rng.choice(photos))
    scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.6)
    photo = photo.resize((math.ceil(photo.width * scale), math.ceil(photo.height * scale)))
    x0 = rng.randint(0, photo.width - width)
    y0 = rng.randint(0, photo.height - height)
    return photo.crop((x0, y0, x0 + width, y0 + height))


def _polygon(cls: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    n, offset = (4, math.pi / 4) if cls == 1 else (3, -math.pi / 2)
    return [
        (cx + r * math.cos(angle + offset + 2 * math.pi * k / n),
         cy + r * math.sin(angle + offset + 2 * math.pi * k / n))
        for k in range(n)
    ]


def render_image(
    rng: random.Random,
    background: Background = "synthetic",
    photos: list[np.ndarray] | None = None,
    size_range: tuple[int, int] = (320, 512),
    max_objects: int = 5,
    opacity: float = 1.0,
) -> tuple[Image.Image, list[Shape]]:
    """Draw one image and return it with its ground-truth shapes.

    Args:
        rng: Source of every random choice (the same state gives the same image).
        background: ``"synthetic"`` patterns or ``"photo"`` crops.
        photos: Photos to crop from (loaded once by the caller); loaded here if None.
        size_range: Width and height are drawn from this range, in pixels.
        max_objects: At most this many shapes (overlapping ones are dropped).
        opacity: 1 draws solid shapes; below 1 each shape is blended with what lies under it.
    """
    if not 0.0 < opacity <= 1.0:
        raise ValueError(f"opacity must be in (0, 1], got {opacity}")
    width, height = rng.randint(*size_range), rng.randint(*size_range)
    if background == "photo":
        img = _photo_background(rng, width, height, photos or _photo_backgrounds())
    else:
        img = _synthetic_background(rng, width, height)
    # Translucent shapes are drawn solid on a copy and blended back once; at opacity 1 they are
    # drawn on the image itself, so the shipped dataset stays byte-for-byte what it was.
    base = img.copy() if opacity < 1.0 else img
    draw = ImageDraw.Draw(img)
    shapes: list[Shape] = []
    for _ in range(rng.randint(1, max_objects)):
        r = rng.uniform(14, min(width, height) / 5)
        cx, cy = rng.uniform(r + 2, width - r - 2), rng.uniform(r + 2, height - r - 2)
        cls = rng.randrange(len(CLASSES))
        if cls == 0:
            pts = None
            box = (cx - r, cy - r, cx + r, cy + r)
        else:
            pts = _polygon(cls, cx, cy, r, rng.uniform(0, 2 * math.pi))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            box = (min(xs), min(ys), max(xs), max(ys))
        if any(iou(box, s.xyxy) > 0.05 for s in shapes):
            continue  # keep objects apart so every label is unambiguous
        x1, y1, x2, y2 = (int(v) for v in box)
        region = np.asarray(img.crop((x1, y1, x2, y2)), dtype=np.float64)
        colour = _contrasting_colour(rng, region.reshape(-1, 3).mean(axis=0))
        if pts is None:
            draw.ellipse(box, fill=colour)
        else:
            draw.polygon(pts, fill=colour)
        shapes.append(Shape(cls, box))
    if opacity < 1.0:
        img = Image.blend(base, img, opacity)
    return img, shapes


def yolo_label_lines(shapes: list[Shape], width: int, height: int) -> list[str]:
    """YOLO txt format: ``cls cx cy w h`` normalised to the image size, one line per shape."""
    return [yolo_label_line(s.cls, s.xyxy, width, height) for s in shapes]


def iter_images(
    n: int, seed: int, background: Background = "synthetic", opacity: float = 1.0
) -> Iterator[tuple[Image.Image, list[Shape]]]:
    """Yield ``n`` seeded images; the same seed always gives the same images."""
    rng = random.Random(seed)
    photos = _photo_backgrounds() if background == "photo" else None
    for _ in range(n):
        yield render_image(rng, background=background, photos=photos, opacity=opacity)


def write_split(
    root: Path,
    split: str,
    n: int,
    seed: int,
    background: Background = "synthetic",
    progress: Callable[[int], None] | None = None,
    opacity: float = 1.0,
) -> int:
    """Write ``n`` images and labels under ``root/images/split`` and ``root/labels/split``."""
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    for i, (img, shapes) in enumerate(iter_images(n, seed, background, opacity)):
        stem = f"{split}_{i:05d}"
        img.save(img_dir / f"{stem}.jpg", quality=92)
        (lbl_dir / f"{stem}.txt").write_text("\n".join(yolo_label_lines(shapes, *img.size)) + "\n")
        if progress:
            progress(1)
    return n


def dataset_names(root: Path) -> list[str] | None:
    """Class names by index from ``root/data.yaml`` (``names``: a list or an index map), or
    None when the file or the key is missing."""
    yaml_path = root / "data.yaml"
    if not yaml_path.is_file():
        return None
    names = (yaml.safe_load(yaml_path.read_text()) or {}).get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def write_data_yaml(
    root: Path,
    splits: tuple[str, ...] = ("train", "val", "test"),
    folders: dict[str, str] | None = None,
) -> Path:
    """Write the Ultralytics dataset file (absolute path, so it works from any cwd).

    Args:
        root: Dataset folder (``images/<split>``, ``labels/<split>``).
        splits: Keys to write; Ultralytics requires ``train`` and ``val``.
        folders: Split key -> folder under ``images/`` when it is not the key itself (an
            evaluation-only set can point ``train`` and ``val`` at its test images).
    """
    folders = folders or {}
    lines = [f"path: {root.resolve()}"]
    lines += [f"{s}: images/{folders.get(s, s)}" for s in splits]
    lines.append("names:")
    lines += [f"  {i}: {name}" for i, name in enumerate(CLASSES)]
    path = root / "data.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def generate_dataset(
    root: Path,
    n_train: int = 800,
    n_val: int = 150,
    n_test: int = 150,
    seed: int = 0,
    background: Background = "synthetic",
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate train/val/test splits with distinct seeds and return the ``data.yaml`` path."""
    # Distinct, fixed seeds per split keep the held-out test split disjoint from training.
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        write_split(root, split, n, seed * 1000 + offset, background, progress)
    return write_data_yaml(root)
