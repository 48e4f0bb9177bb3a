"""Background services for the local stack: start detached, remember the pid, stop the group.

``make demo`` starts the gateway, the web app and the Evidently UI as plain background processes
(TorchServe has its own launcher, :mod:`devstack.torchserve`). Each gets a folder under the run
directory with its pid file and log, so ``make stop`` works from another shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Service:
    """A named background process with its pid file and log under ``run_dir/name``."""

    name: str
    run_dir: Path

    @property
    def folder(self) -> Path:
        return self.run_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.folder / "pid"

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child still answers kill(0); it is not serving anything.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (FileNotFoundError, IndexError):
            return True
        return state != "Z"

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> int:
        """Start ``argv`` detached (own session) with output appended to the log."""
        if self.is_running():
            return self.pid() or 0
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: stop() reaches its children too
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``timeout``. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        stopped = False
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped = True
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.is_running():
                time.sleep(0.2)
            if self.is_running():
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_http(url: str, timeout: float, ok: tuple[int, ...] = (200,),
              alive: Service | None = None) -> bool:
    """Poll ``url`` until it answers one of ``ok``; False on timeout or if ``alive`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive.is_running():
            return False
        try:
            if httpx.get(url, timeout=2.0).status_code in ok:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False
