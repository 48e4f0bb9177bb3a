"""Times of events on a timeline: log stamps, steps between marks, overlapping windows.

The loop section reads its marks out of the retrain job's log (``log_time``) and reports the
step from each to the next (``step_durations``); the hot-swap section splits requests into those
that met a swap window and those that did not (``overlaps``).

Example:
    >>> step_durations({"sent": 10.0, "trained": 250.0, "serving": 254.5})
    {'sent': None, 'trained': 240.0, 'serving': 4.5}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")


def log_time(text: str, needle: str) -> float | None:
    """Epoch seconds of the first log line containing ``needle``; None if there is none.

    Lines are Python logging's default ``asctime`` (``2026-11-23 10:49:37,469 ...``), local
    time, as the retrain job writes them.
    """
    for line in text.splitlines():
        match = _LOG_TIME.match(line)
        if match and needle in line:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            return stamp.timestamp() + int(match.group(2)) / 1e3
    return None


def overlaps(start: float, end: float, windows: Sequence[tuple[float, float]]) -> bool:
    """Whether the interval [start, end] meets any of ``windows`` (closed intervals)."""
    return any(start <= w_end and w_start <= end for w_start, w_end in windows)


def step_durations(marks: Mapping[str, float | None], digits: int = 1) -> dict[str, float | None]:
    """Seconds from the previous known time mark to each mark (None for an unknown mark).

    ``marks`` is ordered (insertion order); a mark that is None is skipped, so the next step runs
    from the last known one. Example: ``{"a": 0, "b": None, "c": 5}`` ->
    ``{"a": None, "b": None, "c": 5.0}``: the first known mark has no step before it.
    """
    out: dict[str, float | None] = {}
    last: float | None = None
    for name, t in marks.items():
        out[name] = None if t is None or last is None else round(t - last, digits)
        if t is not None:
            last = t
    return out
