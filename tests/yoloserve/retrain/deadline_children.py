"""What the deadline tests run in ``run_with_deadline``'s child: module-level functions, so that a
spawned child finds them by name (``tests.yoloserve.retrain.deadline_children``)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path


def load_and_forward(weights: str, threads: int) -> int:
    """Load a YOLO model from ``weights`` and predict one image, as training starts.

    ``threads`` first, as ``yoloserve.training.train`` does (``_use_all_cores``) before
    ``YOLO(weights)``: with a forked child of a parent that used torch's thread pool, loading the
    checkpoint (``Module.float``) waits forever.

    Returns:
        How many results the prediction gave (one per image).
    """
    import numpy as np
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(threads)
    model = YOLO(weights)
    image = np.full((320, 320, 3), 114, dtype=np.uint8)
    return len(list(model.predict(image, imgsz=320, device="cpu", verbose=False)))


def hang_with_a_grandchild(pids_file: str) -> None:
    """Start a grandchild (as a dataloader worker would be), write both pids, then hang."""
    grandchild = subprocess.Popen(["sleep", "600"])
    Path(pids_file).write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(600)


def fail(message: str) -> None:
    """Log a line, then raise ``ValueError(message)``."""
    logging.getLogger("yoloserve.retrain.test").info("about to fail: %s", message)
    raise ValueError(message)


def answer(value: int) -> dict[str, int]:
    """Log a line and return ``{"value": value, "pid": <the child's pid>}``."""
    logging.getLogger("yoloserve.retrain.test").info("answering %d", value)
    return {"value": value, "pid": os.getpid()}
