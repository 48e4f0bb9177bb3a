"""Helpers shared by the retrain job tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow


def read_calls(path: Path) -> list[dict[str, Any]]:
    """The calls the fake training logged, one dict per call, oldest first."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queue_job(registry: Registry) -> str:
    """Record a queued job, as ``POST /retrain`` does before its process starts."""
    return registry.record_job(state="queued", created_at=utcnow(), trigger="test").job_id


def wait_final(registry: Registry, job_id: str, timeout: float, poll_s: float = 1.0) -> RetrainJob:
    """The job's record once it has ended (neither queued nor running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = registry.get_job(job_id)
        if job.state not in ("queued", "running"):
            return job
        time.sleep(poll_s)
    raise AssertionError(f"job {job_id} still {registry.get_job(job_id).state} after {timeout} s")
