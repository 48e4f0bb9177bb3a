"""The mirror's health, in a small JSON file every tracking process updates and /metrics reads.

``<run_dir>/tracking/status.json``: ``{"failures_total", "last_error", "last_failure_at",
"last_sync_at", "in_sync"}``. The gateway reads it at scrape time without importing mlflow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from yoloserve.files import atomic_write

STATUS_FILE = "tracking/status.json"


def status_path(run_dir: Path) -> Path:
    return run_dir / STATUS_FILE


def read_status(run_dir: Path) -> dict[str, Any]:
    """The status, or zeros when nothing was ever tracked."""
    try:
        return dict(json.loads(status_path(run_dir).read_text()))
    except (FileNotFoundError, ValueError):
        return {"failures_total": 0, "in_sync": None}


def _update(run_dir: Path, **changes: Any) -> dict[str, Any]:
    path = status_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=10):
        data = read_status(run_dir)
        if changes.pop("failure", False):
            data["failures_total"] = int(data.get("failures_total", 0)) + 1
            data["last_failure_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            data["in_sync"] = False
        data.update(changes)
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())
    return data


def record_failure(run_dir: Path, what: str, exc: BaseException) -> None:
    """Count one MLflow call that failed (an outage): the next sync repairs what it missed."""
    _update(run_dir, failure=True, last_error=f"{what}: {type(exc).__name__}: {exc}"[:500])


def record_sync(run_dir: Path) -> None:
    """A full sync succeeded: MLflow agrees with the registry now."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _update(run_dir, in_sync=True, last_sync_at=now)
