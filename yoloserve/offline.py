"""Make Ultralytics work with no internet, before it is imported.

Ultralytics looks hosts up at import (``is_online``), downloads fonts for plots and ``yolo11n.pt``
for its AMP check while training, and writes a settings file under the user's home. None of that
may happen here: we switch it off and give it a settings folder of our own.
"""

from __future__ import annotations

import os

from yoloserve.paths import RUN_DIR


def configure_offline() -> None:
    """Set the environment Ultralytics reads at import time (idempotent; call before importing)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config_dir = RUN_DIR / "ultralytics"
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_VERBOSE", "False")
