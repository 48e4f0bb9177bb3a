"""The real web app (``python -m webapp``) in front of the integration stack's real gateway.

The stack (real TorchServe + gateway over isolated models/ and data/) is the integration tests'
session fixture, reused as is; the web app runs as its own Streamlit process on a free port,
configured only through its ``WEBAPP_*`` variables, as ``make demo`` starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.torchserve import free_ports
from tests.integration.conftest import USER_KEY, Stack, wait_ready
from yoloserve import paths

ARTIFACTS = paths.ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def webapp_url(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running web app that talks to the stack's gateway with the user key."""
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "WEBAPP_PORT": str(port),
        "WEBAPP_ADDRESS": "127.0.0.1",
        "WEBAPP_GATEWAY_URL": stack.gateway_url,
        "WEBAPP_API_KEY": USER_KEY,
        "WEBAPP_SAMPLES_DIR": str(stack.data_dir / "samples"),
    }
    log_path = tmp_path_factory.mktemp("webapp") / "webapp.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp"], cwd=paths.ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(f"{url}/_stcore/health", 90, process)
        except Exception:
            print(log_path.read_text(errors="replace")[-3000:])
            raise
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (gitignored), kept after the run for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
