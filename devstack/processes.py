"""Stopping a server the tests started: ask first, then kill its whole process group.

Each server runs in a session of its own (``start_new_session=True``), so its process group is
the server with every worker it spawned.

Example:
    >>> proc = subprocess.Popen(["sleep", "60"], start_new_session=True)  # doctest: +SKIP
    >>> stop_process(proc, signal.SIGTERM, group=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | None, first: signal.Signals, *, group: bool,
                 timeout: float = 15.0) -> None:
    """Send ``first`` (to the process group with ``group``, else to the process), wait up to
    ``timeout`` s, then SIGKILL the group. Nothing happens to a process that has ended."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, first)
        else:
            os.kill(proc.pid, first)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
