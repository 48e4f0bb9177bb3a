"""stop_process: a server that obeys its first signal ends by it; one that ignores it is
killed with its whole process group after the timeout."""

from __future__ import annotations

import signal
import subprocess
import time

from devstack.processes import stop_process


def test_the_first_signal_is_enough_for_an_obedient_process() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    stop_process(proc, signal.SIGTERM, group=True, timeout=5)
    assert proc.returncode == -signal.SIGTERM


def test_a_process_that_ignores_it_is_killed_with_its_children() -> None:
    # A shell that ignores SIGTERM, with a child that would outlive it.
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"],
                            start_new_session=True)
    time.sleep(0.3)
    started = time.monotonic()
    stop_process(proc, signal.SIGTERM, group=True, timeout=1)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 10
    deadline = time.monotonic() + 5  # the orphaned child is reaped a moment later
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                         check=False).returncode == 0:
        assert time.monotonic() < deadline, "a process of its group is left"
        time.sleep(0.1)


def test_an_ended_process_is_left_alone() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    stop_process(proc, signal.SIGTERM, group=True)
    stop_process(None, signal.SIGTERM, group=True)
    assert proc.returncode == 0
