"""Durable file writes shared by the embedder artifact, feedback images and the CSV exports.

A reader (another service, or the retrain job listing images) must see the old file or the new
one, never half of one, and an acknowledged write must survive a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, temp_suffix: str = "", sync_dir: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Args:
        path: Target file; its folder must exist.
        data: The whole new content.
        temp_suffix: Suffix of the temporary name (e.g. ``.tmp`` keeps it out of image listings).
        sync_dir: Also fsync the folder, so the rename itself survives a crash.
    """
    # Same folder as the target: os.replace is atomic only within one filesystem.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=temp_suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other services (and users) read these files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
