"""The real web app (``python -m webapp``) in front of the integration stack's real gateway.

The stack (real TorchServe + gateway over isolated models/ and data/) is the integration tests'
session fixture, reused as is; the web app runs as its own Streamlit process on a free port,
configured only through its ``WEBAPP_*`` variables, as ``make demo`` starts it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_ports
from devstack.supervisor import Program
from devstack.waiting import url_ready
from tests.integration.conftest import USER_KEY, Stack
from yoloserve import paths

ARTIFACTS = paths.ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def webapp_url(stack: Stack) -> Iterator[str]:
    """Base URL of a running web app that talks to the stack's gateway with the user key.

    It runs under the stack's supervisord, like every other service of the stack.
    """
    (port,) = free_ports(1)
    env = {
        "WEBAPP_PORT": str(port),
        "WEBAPP_ADDRESS": "127.0.0.1",
        "WEBAPP_GATEWAY_URL": stack.gateway_url,
        "WEBAPP_API_KEY": USER_KEY,
        "WEBAPP_SAMPLES_DIR": str(stack.data_dir / "samples"),
    }
    url = f"http://127.0.0.1:{port}"
    program = Program("webapp", [sys.executable, "-m", "webapp"], env, cwd=paths.ROOT,
                      ready=url_ready(f"{url}/_stcore/health"))
    stack.start_program(program, 90)
    try:
        yield url
    finally:
        stack.supervisor.stop("webapp")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (gitignored), kept after the run for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
