"""When ``watch`` adds a run: the trigger rules with a fake clock, then the real CLI process.

The unit tests drive :func:`reporting.watch.watch_loop` with a scripted row count and clock, so
they take no time; the last test starts ``python -m reporting watch`` for real, appends rows to
its prod CSV and reads the runs back from the Evidently workspace it writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_prod, make_ref, write_csvs

from reporting.watch import Trigger, watch_loop
from yoloserve import paths


@pytest.mark.parametrize(
    ("last_count", "count", "elapsed", "reason"),
    [
        (40, 49, 10.0, None),  # below the next multiple, timer not due
        (40, 50, 10.0, "prod rows crossed 50 (now 50)"),
        (40, 51, 10.0, "prod rows crossed 50 (now 51)"),
        (50, 99, 10.0, None),  # 50 was already reported
        (49, 151, 10.0, "prod rows crossed 150 (now 151)"),  # one run for several multiples
        (40, 40, 299.9, None),
        (40, 40, 300.0, "300 s since the last run"),  # timer fires with no new rows
        (40, 12, 1.0, "prod rows went down (40 -> 12)"),  # CSV rebuilt
    ],
)
def test_trigger_due(last_count: int, count: int, elapsed: float, reason: str | None) -> None:
    trigger = Trigger(every_rows=50, interval_s=300.0, last_count=last_count, last_run_at=100.0)
    assert trigger.due(count, 100.0 + elapsed) == reason


def test_mark_restarts_both_counters() -> None:
    trigger = Trigger(every_rows=50, interval_s=300.0, last_count=0, last_run_at=0.0)
    trigger.mark(60, 500.0)
    assert trigger.due(99, 799.0) is None
    assert trigger.due(100, 799.0) is not None
    assert trigger.due(60, 800.0) is not None


def _scripted(values: list[float]) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def test_loop_runs_at_start_on_k_rows_and_on_the_timer() -> None:
    # One (count, clock) reading per poll; the loop reads the count once before it starts.
    counts = [0, 10, 49, 50, 55, 55, 55, 120]
    clock = [0.0, 1.0, 2.0, 3.0, 4.0, 50.0, 63.0, 64.0]
    reasons: list[str] = []
    sleeps: list[float] = []
    runs = watch_loop(
        count=_scripted(counts), run=reasons.append, every_rows=50, interval_s=60.0,
        poll_s=2.5, clock=_scripted(clock), sleep=sleeps.append, max_runs=4,
    )
    assert runs == 4
    assert reasons == [
        "start",
        "prod rows crossed 50 (now 50)",
        # The run at t=3 restarted the timer: it fires at t=63, not at t=60.
        "60 s since the last run",
        "prod rows crossed 100 (now 120)",
    ]
    assert set(sleeps) == {2.5}


def test_a_failing_run_counts_and_the_loop_goes_on() -> None:
    calls: list[str] = []

    def run(reason: str) -> None:
        calls.append(reason)  # the CLI's run() logs its own errors and returns

    runs = watch_loop(
        count=_scripted([0, 5, 5]), run=run, every_rows=5, interval_s=1e9, poll_s=0.0,
        clock=_scripted([0.0, 1.0, 2.0]), sleep=lambda _: None, max_runs=2,
    )
    assert runs == 2 and calls == ["start", "prod rows crossed 5 (now 5)"]


def _runs_in(workspace: Path) -> list[str]:
    """Run ids stored in the workspace (one per run, whatever its number of snapshots)."""
    from reporting.config import Settings
    from reporting.project import find_project, open_workspace
    from reporting.service import workspace_lock

    # Under the writers' lock: the watcher may be writing a snapshot file right now.
    with workspace_lock(Settings(workspace=workspace)):
        ws = open_workspace(workspace)
        project = find_project(ws, "YOLO detection monitoring")
        if project is None:
            return []
        run_ids = set()
        for snapshot_id in ws.list_runs(project.id):
            model = ws.get_run(project.id, snapshot_id)
            # The reference-only run is the watcher's bootstrap, not one of its runs.
            if model is not None and "reference" not in model.tags:
                run_ids.add(model.metadata["run_id"])
    return sorted(run_ids)


def _wait_for(predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"watch exited with {proc.returncode}"
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.mark.integration
def test_watch_cli_adds_runs_every_k_rows_and_on_the_timer(tmp_path: Path) -> None:
    ref, prod = make_ref(), make_prod(n=12, seed=3)
    ref_path, prod_path = write_csvs(tmp_path / "data", ref, prod)
    workspace, log_path = tmp_path / "ws", tmp_path / "watch.log"
    env = {**os.environ, "DO_NOT_TRACK": "1", "REPORTING_HTML_KEEP": "0"}
    command = [
        sys.executable, "-m", "reporting", "watch", "--workspace", str(workspace),
        "--ref", str(ref_path), "--prod", str(prod_path),
        "-k", "20", "--interval", "40", "--poll", "0.5",
    ]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=paths.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    try:
        _wait_for(lambda: len(_runs_in(workspace)) == 1, 90, proc)  # the run at start
        started = time.monotonic()
        # 12 -> 32 rows crosses 20: a run follows within a poll or two, long before the timer.
        make_prod(n=20, seed=4).to_csv(prod_path, mode="a", header=False, index=False)
        _wait_for(lambda: len(_runs_in(workspace)) == 2, 35, proc)
        assert time.monotonic() - started < 35
        # No more rows: the next run comes from the 40 s timer alone.
        _wait_for(lambda: len(_runs_in(workspace)) == 3, 90, proc)
    finally:
        proc.terminate()
        proc.wait(15)
    text = log_path.read_text()
    assert "[start] project 'YOLO detection monitoring' ready; reference run stored" in text
    assert "[start] run added" in text
    assert "[prod rows crossed 20 (now 32)] run added" in text
    assert "[40 s since the last run] run added" in text
    html = sorted((workspace / "html").glob("*.html"))
    assert len(html) == 6  # drift + classification per run
