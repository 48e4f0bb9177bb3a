"""``.run/demo.env``: the keys and passwords `make demo` and `make up` create once (mode 0600).

One reader for the file, so the demo, the compose stack and the drift scenario agree on it.

Example:
    >>> read_env_file(Path("/nonexistent"))
    {}
"""

from __future__ import annotations

from pathlib import Path

from yoloserve import paths

DEMO_ENV = paths.RUN_DIR / "demo.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a file such as ``.run/demo.env`` (comments skipped; {} if absent)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.strip().startswith("#"):
            values[name.strip()] = value.strip()
    return values
