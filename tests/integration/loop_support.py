"""Helpers of the closed-loop integration tests (hot swap, retrain job) on the shared stack."""

from __future__ import annotations

import time

import httpx

from tests.integration.conftest import Stack
from yoloserve.modelserver.deploy import activate_sync
from yoloserve.modelserver.packaging import MODEL_NAME
from yoloserve.modelserver.registry import Registry


def wait_no_active_job(registry: Registry, timeout: float = 900) -> None:
    """Let a retrain job another test started finish first: it may swap the model too."""
    deadline = time.monotonic() + timeout
    while any(j.state in ("queued", "running") for j in registry.load().jobs):
        assert time.monotonic() < deadline, "a retrain job is still running"
        time.sleep(1)


def loaded_versions(stack: Stack) -> list[str]:
    """Versions of the model TorchServe has registered now."""
    url = f"{stack.torchserve.management_url}/models/{MODEL_NAME}/all"
    return sorted(str(m["modelVersion"]) for m in httpx.get(url, timeout=10).json())


def restore_default(stack: Stack, version: str) -> None:
    """Serve ``version`` again if a test left another one serving (the session stack is shared:
    the other integration tests expect the first version)."""
    if stack.registry.load().default_version != version or loaded_versions(stack) != [version]:
        activate_sync(stack.registry, version, management_url=stack.torchserve.management_url,
                      inference_url=stack.torchserve.inference_url, drain_s=0.5)
