"""benchmarks.timeline: retrain log times, steps between marks, swap windows."""

from __future__ import annotations

from datetime import datetime

import pytest

from benchmarks.timeline import log_time, overlaps, step_durations


def test_log_time_reads_the_first_matching_line() -> None:
    log = ("ultralytics noise without a time\n"
           "2026-11-23 10:49:37,469 INFO yoloserve.retrain.job: job r-0002: parent v3, data {}\n"
           "2026-11-23 10:55:01,001 INFO yoloserve.retrain.job: job r-0002: v4 serves now\n")
    start = log_time(log, "job r-0002: parent")
    assert start == datetime(2026, 11, 23, 10, 49, 37, 469000).timestamp()
    assert log_time(log, "serves now") == pytest.approx(start + 323.532)
    assert log_time(log, "noise") is None  # a line without a timestamp is not a mark
    assert log_time(log, "rejected") is None


def test_overlaps_closed_intervals() -> None:
    windows = [(10.0, 12.0), (20.0, 21.0)]
    assert overlaps(9.0, 10.0, windows) and overlaps(11.0, 11.5, windows)
    assert overlaps(12.0, 30.0, windows) and overlaps(5.0, 25.0, windows)
    assert not overlaps(12.1, 19.9, windows) and not overlaps(0.0, 1.0, [])


def test_step_durations() -> None:
    marks = {"a": 100.0, "b": None, "c": 104.26, "d": 103.0}
    assert step_durations(marks) == {"a": None, "b": None, "c": 4.3, "d": -1.3}
