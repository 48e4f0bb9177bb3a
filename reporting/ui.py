"""Start the Evidently UI on the workspace, without telemetry.

``evidently ui`` sends usage telemetry unless ``DO_NOT_TRACK`` is set; it is set here for every
start, from the CLI and from the tests alike.

Example:
    >>> from reporting.config import Settings
    >>> ui_command(Settings(ui_port=9000))[-2:]
    ['--port', '9000']
"""

from __future__ import annotations

import os
import sys

from reporting.config import Settings


def ui_command(settings: Settings) -> list[str]:
    """Command line of ``evidently ui`` for these settings, run by this interpreter.

    ``python -m evidently.cli`` is the console script ``evidently`` without relying on the
    venv's ``bin/`` being on PATH.
    """
    return [
        sys.executable, "-m", "evidently.cli", "ui",
        "--workspace", str(settings.workspace),
        "--host", settings.ui_host,
        "--port", str(settings.ui_port),
    ]


def ui_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the UI process: ``base`` (default: ours) with telemetry off."""
    env = dict(os.environ if base is None else base)
    env["DO_NOT_TRACK"] = "1"
    return env


def exec_ui(settings: Settings) -> None:
    """Become ``evidently ui`` (same pid: a supervisor's signals reach the UI itself).

    The workspace folder is created if missing. Does not return.
    """
    settings.workspace.mkdir(parents=True, exist_ok=True)
    command = ui_command(settings)
    os.execve(command[0], command, ui_env())
