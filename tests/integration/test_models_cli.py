"""The operator's verbs on the real TorchServe: ``make redeploy`` (scripts.models redeploy) and
``make rollback`` (scripts.models activate), run as the CLI processes they are."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.integration.conftest import Stack
from tests.integration.loop_support import loaded_versions, restore_default, wait_no_active_job
from yoloserve import paths
from yoloserve.modelserver.packaging import sha256_file

pytestmark = pytest.mark.integration


def models_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = stack.environment(0)  # YOLOSERVE_MODELS_DIR etc.: the CLI's defaults point at the stack
    env["TORCHSERVE_MANAGEMENT_URL"] = stack.torchserve.management_url
    env["TORCHSERVE_INFERENCE_URL"] = stack.torchserve.inference_url
    return subprocess.run(
        [sys.executable, "-m", "scripts.models", *args],
        cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def served_version(stack: Stack) -> str:
    sample = stack.data_dir / "samples" / "shapes_2.jpg"
    response = httpx.post(f"{stack.gateway_url}/predict", timeout=60,
                          files={"file": (sample.name, sample.read_bytes())})
    assert response.status_code == 200, response.text
    return response.headers["X-Model-Version"]


def test_redeploy_then_rollback_from_the_command_line(stack: Stack) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    try:
        # The stack serves these weights on ONNX Runtime: the same runtime named, so the same
        # version (auto would time every runtime and reuse only a version auto chose).
        redeploy = models_cli(
            stack, "redeploy", "--weights", str(stack.weights), "--runtime", "onnx"
        )
        assert redeploy.returncode == 0, redeploy.stderr
        # Same bytes as a packaged version: that version is reused, not a new one made.
        sha = sha256_file(stack.weights)
        [version] = [v for v in registry.load().versions
                     if v.sha256 == sha and v.version == registry.load().default_version]
        assert f"version {version.version} serves now" in redeploy.stdout
        assert registry.load().default_version == version.version
        assert served_version(stack) == version.version

        listing = models_cli(stack, "list")
        assert listing.returncode == 0 and f"loaded ['{version.version}']" in listing.stdout

        unknown = models_cli(stack, "activate", "999")
        assert unknown.returncode == 1 and "unknown_version" in unknown.stderr
        assert loaded_versions(stack) == [version.version], "a refused activate changes nothing"

        rollback = models_cli(stack, "activate", first)
        assert rollback.returncode == 0, rollback.stderr
        assert served_version(stack) == first and loaded_versions(stack) == [first]
        assert registry.load().default_version == first
    finally:
        restore_default(stack, first)
