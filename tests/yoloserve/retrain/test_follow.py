"""``python -m yoloserve.retrain status --follow``: a progress bar over a job's phases until it
ends, read from the real registry; first the loop with a scripted job, then the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from tests.support import store_settings
from yoloserve import paths
from yoloserve.modelserver.registry import Registry, RetrainProgress, utcnow
from yoloserve.retrain.follow import describe, follow_job
from yoloserve.retrain.progress import progress_fraction, progress_label
from yoloserve.retrain.settings import RetrainSettings


def _steps(registry: Registry, job_id: str) -> Iterator[None]:
    """What the job does between two polls: phases, three epochs, then it succeeds."""
    for progress in (
        RetrainProgress(phase="dataset"),
        RetrainProgress(phase="training", epoch=0, epochs=3),
        RetrainProgress(phase="training", epoch=1, epochs=3, eta_s=64.0),
        RetrainProgress(phase="training", epoch=2, epochs=3, eta_s=31.0),
        RetrainProgress(phase="evaluating"),
        RetrainProgress(phase="packaging"),
        RetrainProgress(phase="swapping"),
    ):
        registry.set_job_progress(job_id, progress)
        yield
    registry.update_job(job_id, state="succeeded", reason="v2 serves", finished_at=utcnow())
    yield


def test_follow_draws_each_phase_until_the_job_ends(registry: Registry) -> None:
    job_id = registry.record_job(state="running", started_at=datetime.now(UTC),
                                 pid=os.getpid()).job_id
    steps = _steps(registry, job_id)
    seen: list[tuple[str, float]] = []

    def sleep(_: float) -> None:
        seen.append(describe(registry.get_job(job_id)))
        next(steps)

    console = Console(record=True, force_terminal=True, width=100)
    job = follow_job(registry, job_id, interval_s=0.0, console=console, sleep=sleep)

    assert job.state == "succeeded"
    labels = [label for label, _ in seen]
    assert labels == [
        f"{job_id} running",  # before its first phase
        f"{job_id} dataset",
        f"{job_id} training: epoch 0 of 3",
        f"{job_id} training: epoch 1 of 3, ETA 64 s",
        f"{job_id} training: epoch 2 of 3, ETA 31 s",
        f"{job_id} evaluating",
        f"{job_id} packaging",
        f"{job_id} swapping",
    ]
    fractions = [done for _, done in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] < 1.0
    drawn = console.export_text()
    assert all(label in drawn for label in labels)  # every poll was drawn
    assert f"{job_id} succeeded" in drawn and "100%" in drawn  # the bar ends full


@pytest.mark.parametrize(
    ("progress", "label", "fraction"),
    [
        (RetrainProgress(phase="dataset"), "dataset", 0.0),
        (RetrainProgress(phase="training", epoch=3, epochs=8, eta_s=95), "training: epoch 3 of 8, "
         "ETA 95 s", 0.35),
        (RetrainProgress(phase="training", epoch=8, epochs=8, eta_s=0), "training: epoch 8 of 8, "
         "ETA 0 s", 0.85),
        (RetrainProgress(phase="evaluating"), "evaluating", 0.85),
        (RetrainProgress(phase="swapping"), "swapping", 0.97),
    ],
)
def test_progress_label_and_fraction(progress: RetrainProgress, label: str,
                                     fraction: float) -> None:
    assert progress_label(progress) == label
    assert progress_fraction(progress) == pytest.approx(fraction)


def _cli(settings: RetrainSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORE_DATABASE_URL": settings.store.url,
           "RETRAIN_RUN_DIR": str(settings.run_dir), "RETRAIN_LAUNCHER": "process"}
    return subprocess.run(
        [sys.executable, "-m", "yoloserve.retrain", "status", *args], cwd=paths.ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_cli_follow_prints_the_final_job_and_exits_by_its_state(
    settings: RetrainSettings, registry: Registry
) -> None:
    done = registry.record_job(state="succeeded", reason="v2 serves", finished_at=utcnow())
    registry.set_job_progress(done.job_id, RetrainProgress(phase="swapping"))
    failed = registry.record_job(state="failed", reason="RuntimeError: out of cheese",
                                 finished_at=utcnow())
    registry.set_job_progress(failed.job_id, RetrainProgress(phase="training", epoch=2, epochs=8))

    ok = _cli(settings, done.job_id, "--follow", "--interval", "0.1")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout[ok.stdout.index("{"):])
    assert (body["state"], body["progress"]["phase"]) == ("succeeded", "swapping")

    # No id: the newest job; a failed one exits 1 and says which phase it reached.
    bad = _cli(settings, "-f")
    assert bad.returncode == 1, bad.stderr
    body = json.loads(bad.stdout[bad.stdout.index("{"):])
    assert body["job_id"] == failed.job_id and body["progress"]["epoch"] == 2

    unknown = _cli(settings, "r-9999", "--follow")
    assert unknown.returncode == 2 and "r-9999" in unknown.stderr

    listing = _cli(settings)
    lines = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [line["progress"] for line in lines] == ["swapping", "training: epoch 2 of 8"]


def test_cli_follow_without_jobs_says_so(settings: RetrainSettings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"store": store_settings(tmp_path / "empty")})
    result = _cli(empty, "--follow")
    assert result.returncode == 2 and "no retrain jobs yet" in result.stderr
