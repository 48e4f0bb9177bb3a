"""Print the ``.mar`` of the registry's default version, for the serving image's entrypoint.

``python -m yoloserve.modelserver.serving_default MODELS_DIR`` prints the file name when the
default version's ``.mar`` is in ``MODELS_DIR/store``, nothing otherwise (no store yet, no
default yet, the file not written yet): the entrypoint waits and asks again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from yoloserve.errors import YoloServeError
from yoloserve.modelserver.registry import open_registry


def default_mar(models_dir: Path) -> str | None:
    """The default version's ``.mar`` file name if it is in ``models_dir/store``."""
    try:
        record = open_registry(legacy_file=models_dir / "registry.json").default()
    except (SQLAlchemyError, YoloServeError, OSError, ValueError):
        return None
    if record is None or not (models_dir / "store" / record.mar).is_file():
        return None
    return record.mar


if __name__ == "__main__":
    mar = default_mar(Path(sys.argv[1]))
    if mar:
        print(mar)
