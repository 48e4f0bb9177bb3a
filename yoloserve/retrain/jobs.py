"""One retrain job at a time, across processes: the lock, starting the job, stale jobs.

Who calls what: the gateway only records a queued job (``Registry.record_job_if_idle``); the
acting controller (``yoloserve.controller``, through the trainer's loop) runs it with
``claim_job`` (``RETRAIN_LAUNCHER=queue``) or hands it to its launcher with ``launch_queued``, and
reaps dead jobs; an operator's ``python -m yoloserve.retrain start|run`` uses
``start_job_process`` / ``run_foreground``.

``start_job_process`` takes ``<run_dir>/retrain.lock`` (non-blocking; held means
``RetrainAlreadyRunning``), records the job as ``queued`` and has the launcher
(``yoloserve.retrain.launchers``, ``RETRAIN_LAUNCHER``) start ``python -m yoloserve.retrain run
--job-id ID``: a detached local process (its pid recorded) or a Kubernetes Job. The child takes
the same lock for its whole life (``run_job_process``), so with local processes the lock is held
exactly while a job process lives, whoever started it and even if its starter restarts. A
Kubernetes Job runs in its own pod, so there the launcher also reports any unfinished trainer Job,
and that refuses a start as well. With the ``queue`` launcher nothing is spawned: the trainer
service (``yoloserve.retrain.trainer``) claims the queued job with ``claim_job``, which takes the
same lock without waiting, so two trainers never run one job. A job whose process, trainer or Job
died without finishing is marked failed by ``reap_stale_jobs`` on the next check. The rules live
here; launchers only start jobs and say whether they live.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime

import filelock

from yoloserve.errors import KubernetesError, RetrainAlreadyRunning
from yoloserve.modelserver.registry import ACTIVE_STATES, Registry, RetrainJob, utcnow
from yoloserve.retrain.heartbeat import Heartbeater
from yoloserve.retrain.job import finish, run_job
from yoloserve.retrain.launchers.base import JobLauncher, Liveness
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.process import ProcessLauncher
from yoloserve.retrain.settings import RetrainSettings, lock_path
from yoloserve.store.engine import open_store

logger = logging.getLogger("yoloserve.retrain")



def reap_stale_jobs(
    registry: Registry, *, queued_grace_s: float = 60.0, launcher: JobLauncher | None = None
) -> list[str]:
    """Mark ``queued``/``running`` jobs whose process is gone as ``failed``; returns their ids.

    A queued job whose process is not started yet is being started by someone holding the lock;
    it is only reaped after ``queued_grace_s`` (pass 0 while holding the retrain lock yourself).
    ``launcher`` says whether each job's process lives (a local process when None).
    """
    launcher = launcher or ProcessLauncher()
    active = registry.jobs(kind="retrain", states=ACTIVE_STATES)
    if not active:
        return []  # the common case: no call, no write
    seen = launcher.liveness(active)

    def stale(job: RetrainJob, now: datetime) -> str | None:
        verdict = seen.get(job.job_id, Liveness("alive"))
        if verdict.state == "alive":
            return None
        if verdict.state == "unstarted":
            since = job.created_at or job.started_at
            if since is not None and (now - since).total_seconds() < queued_grace_s:
                return None
        return verdict.reason

    judged = {j.job_id: (j.state, j.pid) for j in active if stale(j, utcnow())}
    if not judged:
        return []
    reaped: list[str] = []
    with registry.update() as data:
        now = utcnow()
        for job in (j for j in data.jobs if j.kind == "retrain"):
            # Re-checked under the lock: a job that finished or moved on meanwhile is not stale.
            reason = stale(job, now) if judged.get(job.job_id) == (job.state, job.pid) else None
            if reason:
                job.state = "failed"
                job.finished_at = now
                job.reason = reason
                reaped.append(job.job_id)
    for job_id in reaped:
        logger.warning("retrain job %s was stale: marked failed", job_id)
    return reaped


def _first_active(registry: Registry) -> RetrainJob | None:
    active = registry.jobs(kind="retrain", states=ACTIVE_STATES)
    return active[0] if active else None


def active_job(registry: Registry, launcher: JobLauncher | None = None) -> RetrainJob | None:
    """The queued or running job, after reaping stale ones; ``None`` when idle."""
    reap_stale_jobs(registry, launcher=launcher)
    return _first_active(registry)


def _lock(settings: RetrainSettings) -> filelock.FileLock:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    # Not thread-local: the gateway may take it from any threadpool thread.
    return filelock.FileLock(str(lock_path(settings)), thread_local=False)


@contextlib.contextmanager
def _exclusive(
    settings: RetrainSettings, registry: Registry, launcher: JobLauncher
) -> Iterator[None]:
    """Hold the retrain lock (without waiting) with no other job active, or raise.

    Raises:
        RetrainAlreadyRunning: a job process holds the lock, a queued job has not taken it yet,
            or the launcher sees a job running (an unfinished trainer Job).
        KubernetesError: the launcher could not tell (the Kubernetes API failed).
    """
    lock = _lock(settings)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as exc:
        active = _first_active(registry)
        what = f"retrain job {active.job_id} is {active.state}" if active else "a retrain job runs"
        raise RetrainAlreadyRunning(what) from exc
    try:
        # Holding the lock, nobody is between recording a job and starting its process.
        reap_stale_jobs(registry, queued_grace_s=0, launcher=launcher)
        active = _first_active(registry)
        if active is not None:  # started, its process has not taken the lock yet
            raise RetrainAlreadyRunning(f"retrain job {active.job_id} is {active.state}")
        elsewhere = launcher.running_elsewhere()
        if elsewhere is not None:  # one at a time, even if the registry says otherwise
            raise RetrainAlreadyRunning(elsewhere)
        yield
    finally:
        lock.release()


def start_job_process(
    settings: RetrainSettings,
    *,
    trigger: str,
    registry: Registry | None = None,
    launcher: JobLauncher | None = None,
) -> str:
    """Record a queued job and start ``python -m yoloserve.retrain run`` for it, detached.

    Returns the job id at once; the job runs in its own session (or pod) and survives this
    process. ``launcher``: where it runs; ``RETRAIN_LAUNCHER`` (``settings.launcher``) when None.

    Raises:
        RetrainAlreadyRunning: a job process holds the lock, a queued job's process is alive, or
            a trainer Job is active.
        OSError, KubernetesError: the job could not be started (it is then recorded as failed).
    """
    registry = registry or Registry(open_store(settings.store.url))
    launcher = launcher or launcher_from_settings(settings)
    with _exclusive(settings, registry, launcher):
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger)
        try:
            fields = launcher.start(job.job_id, settings, registry)
        except (OSError, KubernetesError) as exc:
            finish(registry, job.job_id, "failed", f"could not start the job process: {exc}")
            raise
        if fields:
            registry.update_job(job.job_id, **fields)
        return job.job_id


def launch_queued(
    job: RetrainJob, settings: RetrainSettings, registry: Registry, launcher: JobLauncher
) -> RetrainJob:
    """The controller hands a queued job to ``launcher`` (a detached process, a Kubernetes Job
    or a KFP run), which then records its own progress; nothing happens while the retrain lock
    is held or the launcher sees another job running (the job stays queued for a later look).

    Returns:
        The job's record after the hand-over (``failed`` if the launcher could not start it).
    """
    lock = _lock(settings)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return registry.get_job(job.job_id)
    try:
        if launcher.running_elsewhere() is not None:
            return registry.get_job(job.job_id)
        try:
            fields = launcher.start(job.job_id, settings, registry)
        except (OSError, KubernetesError) as exc:
            return finish(registry, job.job_id, "failed", f"could not start the job: {exc}")
        return registry.update_job(job.job_id, **fields) if fields else registry.get_job(job.job_id)
    finally:
        lock.release()


def run_foreground(
    settings: RetrainSettings, *, trigger: str = "cli", registry: Registry | None = None
) -> RetrainJob:
    """Record a job and run it in this process, holding the retrain lock (an operator's run).

    Raises:
        RetrainAlreadyRunning: another job holds the lock or is starting.
    """
    registry = registry or Registry(open_store(settings.store.url))
    with _exclusive(settings, registry, launcher_from_settings(settings)):
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger,
                                  pid=os.getpid())
        with _beating(settings, job.job_id):
            return run_job(job.job_id, settings, registry)


@contextlib.contextmanager
def _beating(settings: RetrainSettings, job_id: str) -> Iterator[None]:
    """With the ``queue`` launcher, a job run outside the trainer beats as a trainer does:
    starters judge running jobs by heartbeats only, and would reap it as dead otherwise."""
    if settings.launcher != "queue":
        yield
        return
    with Heartbeater(settings, trainer_id=f"cli-{job_id}") as beat:
        beat.set_job(job_id)
        yield


def run_job_process(
    job_id: str, settings: RetrainSettings, registry: Registry | None = None
) -> RetrainJob:
    """What the job process runs: hold the retrain lock, then ``run_job``.

    Raises:
        UnknownJob: no such job.
    """
    registry = registry or Registry(open_store(settings.store.url))
    job = registry.get_job(job_id)
    lock = _lock(settings)
    try:
        # The starter holds the lock until it has written our pid: wait for it, briefly.
        lock.acquire(timeout=settings.lock_wait_s)
    except filelock.Timeout:
        job = registry.get_job(job_id)  # read again: another process may have run it meanwhile
        if job.state != "queued":
            return job
        return finish(registry, job_id, "failed",
                       f"could not take {lock_path(settings)} in {settings.lock_wait_s:.0f} s")
    try:
        with _beating(settings, job_id):
            return _run_if_queued(job_id, settings, registry)
    finally:
        lock.release()


def claim_job(
    job_id: str, settings: RetrainSettings, registry: Registry | None = None
) -> RetrainJob | None:
    """What the trainer runs for a queued job: ``run_job_process`` without the wait.

    The retrain lock is taken without waiting: held means another trainer (or an operator's run)
    runs a job, or a starter is recording one, and the job is left as it is for a later look.
    The caller beats for the job (the trainer names it in its heartbeat first).

    Returns:
        The job's record once run (or as it is, if it was no longer queued); None when the lock
        was held.
    """
    registry = registry or Registry(open_store(settings.store.url))
    lock = _lock(settings)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None
    try:
        return _run_if_queued(job_id, settings, registry)
    finally:
        lock.release()


def _run_if_queued(job_id: str, settings: RetrainSettings, registry: Registry) -> RetrainJob:
    # Holding the lock: a job still queued now is ours; any other state, someone ran or reaped it.
    job = registry.get_job(job_id)
    if job.state != "queued":
        logger.warning("job %s is %s, not queued: nothing to run", job_id, job.state)
        return job
    return run_job(job_id, settings, registry)
