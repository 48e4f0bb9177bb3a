"""Helpers shared by the retrain job tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yoloserve.modelserver.registry import Registry, utcnow


def read_calls(path: Path) -> list[dict[str, Any]]:
    """The calls the fake training logged, one dict per call, oldest first."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queue_job(registry: Registry) -> str:
    """Record a queued job, as ``POST /retrain`` does before its process starts."""
    return registry.record_job(state="queued", created_at=utcnow(), trigger="test").job_id
