"""Rendering the overlays for the tests: kubectl, the tree, the marker secrets.

``kubectl`` is what ``make system-deps`` installs (Debian's kubernetes-client, kubectl 1.20 with
kustomize v2.0.3) or any newer one on PATH; ``KUBECTL`` names another binary. The secrets.env
and postgres.env files hold marker values the tests look for, so the operator's git-ignored
files play no part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod")
SECRET_VALUES = {
    "GATEWAY_API_KEYS": "test-write-key-4f1c9a",
    "GATEWAY_ADMIN_API_KEYS": "test-admin-key-77d20e",
    "WEBAPP_API_KEY": "test-write-key-4f1c9a",
}
# postgres.env: the store's password, a Secret of its own (yoloserve-postgres).
POSTGRES_SECRET_VALUES = {"POSTGRES_PASSWORD": "test-postgres-password-9b3e51"}


def kubectl() -> str:
    """The kubectl binary; a clear failure (not a skip) when setup did not install one."""
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not binary:
        pytest.fail("kubectl is missing: run `make system-deps` (Debian's kubernetes-client)")
    return binary


def render(tree: Path, overlay: str) -> str:
    """``kubectl kustomize`` of one overlay of ``tree``; the YAML stream it prints."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(tree / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
