"""Follow a retrain job from the registry until it ends, with a progress bar (rich).

What ``python -m yoloserve.retrain status --follow`` shows: one bar across the job's phases
(``yoloserve.retrain.progress.PHASE_SPANS``), labelled with the phase, epoch i of N and the ETA
that the job records once per phase and per epoch. The registry is read without a lock; only a
stale job (its process gone) is written, marked failed, as ``status`` does.

Example:
    >>> job = follow_job(Registry(), "r-0007", interval_s=2.0)  # doctest: +SKIP
    >>> job.state  # doctest: +SKIP
    'succeeded'
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from yoloserve.modelserver.registry import ACTIVE_STATES, Registry, RetrainJob
from yoloserve.retrain.jobs import reap_stale_jobs
from yoloserve.retrain.launchers.base import JobLauncher
from yoloserve.retrain.progress import progress_fraction, progress_label


def describe(job: RetrainJob) -> tuple[str, float]:
    """The bar's label and completed share for one job record."""
    if job.state not in ACTIVE_STATES:
        return f"{job.job_id} {job.state}", 1.0
    if job.progress is None:
        return f"{job.job_id} {job.state}", 0.0
    return f"{job.job_id} {progress_label(job.progress)}", progress_fraction(job.progress)


def follow_job(
    registry: Registry, job_id: str, *, interval_s: float = 2.0,
    launcher: JobLauncher | None = None, console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RetrainJob:
    """Poll job ``job_id`` every ``interval_s`` seconds and draw its progress until it ends.

    Returns:
        The job's final record.

    Raises:
        UnknownJob: no such job.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(job_id, total=1.0)
        while True:
            reap_stale_jobs(registry, launcher=launcher)
            job = registry.get_job(job_id)
            label, done = describe(job)
            bar.update(task, description=label, completed=done, refresh=True)  # each poll drawn
            if job.state not in ACTIVE_STATES:
                return job
            sleep(interval_s)
