"""A local ``mlflow server``: SQLite backend and a local artifact folder under one run folder.

The demo runs it as the supervised program ``mlflow`` (``program``, port 8083, ``.run/mlflow``);
the tests start one per module on a free port (``MlflowServer``). Artifacts are proxied by the
server (``--artifacts-destination``): clients upload over HTTP, as they would to the compose
service whose store is MinIO, so nothing here needs the server's filesystem.

Its first start creates the schema: ~34 s on a loaded 2-core machine, so callers start it early
and wait on ``/health`` with a generous timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from devstack.supervisor import Program
from devstack.waiting import http_ok, url_ready, wait_until

START_TIMEOUT_S = 240.0


def command(run_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """``mlflow server`` on ``run_dir/mlflow.db`` and ``run_dir/artifacts``, one worker."""
    run_dir = run_dir.resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{run_dir / 'mlflow.db'}",
        "--artifacts-destination", str(run_dir / "artifacts"),
        "--host", host, "--port", str(port), "--workers", "1",
    ]


def program(run_dir: Path, port: int) -> Program:
    """The demo's supervised MLflow server (``run_dir`` must exist when it starts)."""
    env = {"MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
    return Program("mlflow", command(run_dir, port), env,
                   ready=url_ready(f"http://127.0.0.1:{port}/health"), start_secs=5)


class MlflowServer:
    """An ``mlflow server`` child process in its own session (the tests' server)."""

    def __init__(self, run_dir: Path, port: int) -> None:
        self.run_dir, self.port = run_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start it and wait for ``/health``; returns the seconds it took."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / "server.log").open("ab")
        env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
        self.proc = subprocess.Popen(command(self.run_dir, self.port), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return wait_until(lambda: http_ok(f"{self.url}/health"), timeout, what="mlflow server",
                          alive=lambda: self.proc is not None and self.proc.poll() is None,
                          poll_s=0.5)

    def kill(self) -> None:
        """SIGKILL the server's whole process group (its workers too): an outage."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.run_dir / "server.log").read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
