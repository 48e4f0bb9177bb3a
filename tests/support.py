"""Assertions shared by several test folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yoloserve.store.settings import StoreSettings, sqlite_url


def assert_same_boxes(ours: list[dict[str, Any]], result: Any) -> None:
    """Every Ultralytics box has one of ours: same class, conf within 1e-3, coords within 0.5."""
    theirs = list(
        zip(
            result.boxes.xyxy.tolist(),
            result.boxes.conf.tolist(),
            result.boxes.cls.int().tolist(),
            strict=True,
        )
    )
    assert len(ours) == len(theirs)
    unmatched = list(ours)
    # Matching, not zipping: boxes with equal confidence may come in either order.
    for xyxy, conf, cls in theirs:
        match = next(
            (
                b for b in unmatched
                if b["cls"] == cls and abs(b["conf"] - conf) <= 1e-3
                and np.abs(np.array(b["xyxy"]) - np.array(xyxy)).max() <= 0.5
            ),
            None,
        )
        assert match is not None, f"no match for {cls} {conf:.4f} {xyxy}"
        unmatched.remove(match)


def real_photos(folder: Path) -> dict[str, Path]:
    """Real photos of every kind a user uploads, from scikit-image's bundled data (no download).

    ``grey`` (8-bit L PNG), ``rgba`` (PNG with alpha), ``png`` (RGB), ``jpeg``, ``exif_jpeg`` (a
    JPEG stored sideways with EXIF orientation 6, which decoders must turn upright) and ``scene``
    (a shipped parity scene, so that every run has boxes of the shapes classes to compare).
    """
    import skimage
    from PIL import Image

    bundled = Path(skimage.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    exif_jpeg = folder / "rocket_exif6.jpg"
    if not exif_jpeg.exists():
        with Image.open(bundled / "rocket.jpg") as upright:
            # Stored rotated 90 CCW; orientation 6 says "rotate 90 CW to display".
            stored = upright.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            stored.save(exif_jpeg, quality=92, exif=exif.tobytes())
    scenes = Path(__file__).resolve().parents[1] / "yoloserve" / "modelserver" / "parity_images"
    return {
        "grey": bundled / "camera.png",
        "rgba": bundled / "logo.png",
        "png": bundled / "coffee.png",
        "jpeg": bundled / "rocket.jpg",
        "exif_jpeg": exif_jpeg,
        "scene": scenes / "scene_2.jpg",
    }


def store_settings(folder: Path) -> StoreSettings:
    """Settings of a store of its own: the SQLite file ``folder/yoloserve.db``."""
    return StoreSettings(database_url=sqlite_url(folder / "yoloserve.db"))
