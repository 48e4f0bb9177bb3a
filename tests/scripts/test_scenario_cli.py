"""``scripts.scenario.cli``: the command's options, and exit 2 when the scenario cannot run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from scripts.scenario.cli import app
from yoloserve import paths


def test_python_dash_m_shows_the_options() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scripts.scenario", "--help"],
        capture_output=True, text=True, cwd=paths.ROOT, env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stderr
    for option in ("--gateway-url", "--images", "--min-images", "--min-gain", "--env-file"):
        assert option in run.stdout


def test_gateway_down_stops_with_exit_2(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(
        app,
        ["--gateway-url", f"http://127.0.0.1:{port}", "--env-file", str(tmp_path / "none.env"),
         "--out", str(tmp_path / "out")],
    )
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2
    assert "scenario stopped" in output
    assert "GET /models" in output and "make demo" in output
