"""Decide when ``watch`` adds a run: on a timer, and each time prod crosses a multiple of k rows.

The decision (:class:`Trigger`) is kept apart from the loop (:func:`watch_loop`), and the loop
takes its clock, sleep and run function as arguments, so both are tested without waiting and
without Evidently.

Example:
    >>> trigger = Trigger(every_rows=50, interval_s=300.0, last_count=40, last_run_at=0.0)
    >>> trigger.due(count=49, now=10.0) is None
    True
    >>> trigger.due(count=51, now=11.0)
    'prod rows crossed 50 (now 51)'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Trigger:
    """When the next run is due.

    Attributes:
        every_rows: k: a run each time the row count passes a multiple of k.
        interval_s: a run at least this often (seconds), even with no new rows.
        last_count: prod rows at the last run.
        last_run_at: clock reading (seconds) at the last run.
    """

    every_rows: int
    interval_s: float
    last_count: int
    last_run_at: float

    def due(self, count: int, now: float) -> str | None:
        """Why a run is due now (a short reason), or None.

        Args:
            count: prod rows now.
            now: clock reading, same clock as ``last_run_at``.
        """
        if count < self.last_count:
            # The CSV was rotated or rebuilt: start counting multiples again from here.
            return f"prod rows went down ({self.last_count} -> {count})"
        if count // self.every_rows > self.last_count // self.every_rows:
            return f"prod rows crossed {count // self.every_rows * self.every_rows} (now {count})"
        if now - self.last_run_at >= self.interval_s:
            return f"{self.interval_s:g} s since the last run"
        return None

    def mark(self, count: int, now: float) -> None:
        """Record that a run was made at ``now`` with ``count`` prod rows."""
        self.last_count = count
        self.last_run_at = now


def watch_loop(
    *,
    count: Callable[[], int],
    run: Callable[[str], None],
    every_rows: int,
    interval_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    max_runs: int | None = None,
) -> int:
    """Run ``run(reason)`` at start, then whenever :class:`Trigger` says so.

    A failing ``run`` must handle (log) its own errors; the loop keeps going either way, and the
    failed attempt counts as a run so a persistent error is not retried at every poll.

    Args:
        count: Returns prod rows now (cheap: it is called every ``poll_s``).
        run: Adds a run; gets the reason.
        every_rows: k.
        interval_s: Timer period, seconds.
        poll_s: Seconds between two counts.
        clock: Monotonic clock.
        sleep: Sleep function.
        max_runs: Stop after this many runs (None: run until interrupted).

    Returns:
        Number of runs made.
    """
    rows = count()
    run("start")
    trigger = Trigger(every_rows, interval_s, last_count=rows, last_run_at=clock())
    runs = 1
    while max_runs is None or runs < max_runs:
        sleep(poll_s)
        rows, now = count(), clock()
        reason = trigger.due(rows, now)
        if reason is None:
            continue
        run(reason)
        trigger.mark(rows, now)
        runs += 1
    return runs
