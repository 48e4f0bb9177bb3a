"""One retrain job at a time, across processes: the lock, the detached job process, stale jobs.

``start_job_process`` takes ``<run_dir>/retrain.lock`` (non-blocking; held means
``RetrainAlreadyRunning``), records the job as ``queued`` and spawns
``python -m yoloserve.retrain run --job-id ID`` detached, with the child's pid in the record. The
child takes the same lock for its whole life (``run_job_process``), so the lock is held exactly
while a job process lives, whoever started it and even if the gateway restarts. A job whose
process died without finishing is marked failed by ``reap_stale_jobs`` on the next check.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime

import filelock
import psutil

from yoloserve import paths
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain.job import finish, run_job
from yoloserve.retrain.settings import RetrainSettings, job_log, lock_path

logger = logging.getLogger("yoloserve.retrain")

ACTIVE_STATES = ("queued", "running")


def job_process_alive(pid: int | None, job_id: str) -> bool:
    """Whether ``pid`` is still the process running ``job_id`` (not a zombie, not a reused pid)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process we cannot inspect: assume it is the job
    return job_id in cmdline or "yoloserve.retrain" in cmdline


def reap_stale_jobs(registry: Registry, *, queued_grace_s: float = 60.0) -> list[str]:
    """Mark ``queued``/``running`` jobs whose process is gone as ``failed``; returns their ids.

    A queued job without a pid is being started by someone holding the lock; it is only reaped
    after ``queued_grace_s`` (pass 0 while holding the retrain lock yourself).
    """
    def stale(job: RetrainJob, now: datetime) -> bool:
        if job.state not in ACTIVE_STATES:
            return False
        if job.pid is None:
            since = job.created_at or job.started_at
            return since is None or (now - since).total_seconds() >= queued_grace_s
        return not job_process_alive(job.pid, job.job_id)

    if not any(stale(j, utcnow()) for j in registry.load().jobs):
        return []  # the common case: no write at all
    reaped: list[str] = []
    with registry.update() as data:  # re-checked under the lock: a job may have just finished
        now = utcnow()
        for job in data.jobs:
            if stale(job, now):
                job.state = "failed"
                job.finished_at = now
                job.reason = (f"the job process (pid {job.pid}) ended without finishing"
                              if job.pid else "the job process was never started")
                reaped.append(job.job_id)
    for job_id in reaped:
        logger.warning("retrain job %s was stale: marked failed", job_id)
    return reaped


def _first_active(registry: Registry) -> RetrainJob | None:
    return next((j for j in registry.load().jobs if j.state in ACTIVE_STATES), None)


def active_job(registry: Registry) -> RetrainJob | None:
    """The queued or running job, after reaping stale ones; ``None`` when idle."""
    reap_stale_jobs(registry)
    return _first_active(registry)


def _lock(settings: RetrainSettings) -> filelock.FileLock:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    # Not thread-local: the gateway may take it from any threadpool thread.
    return filelock.FileLock(str(lock_path(settings)), thread_local=False)


@contextlib.contextmanager
def _exclusive(settings: RetrainSettings, registry: Registry) -> Iterator[None]:
    """Hold the retrain lock (without waiting) with no other job active, or raise.

    Raises:
        RetrainAlreadyRunning: a job process holds the lock, or a queued job has not taken it yet.
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
        reap_stale_jobs(registry, queued_grace_s=0)
        active = _first_active(registry)
        if active is not None:  # started, its process has not taken the lock yet
            raise RetrainAlreadyRunning(f"retrain job {active.job_id} is {active.state}")
        yield
    finally:
        lock.release()


def start_job_process(
    settings: RetrainSettings, *, trigger: str, registry: Registry | None = None
) -> str:
    """Record a queued job and start ``python -m yoloserve.retrain run`` for it, detached.

    Returns the job id at once; the job runs in its own session and survives this process.

    Raises:
        RetrainAlreadyRunning: a job process holds the lock, or a queued job's process is alive.
        OSError: the process could not be started (the job is then recorded as failed).
    """
    registry = registry or Registry(settings.registry_path)
    with _exclusive(settings, registry):
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger)
        log = job_log(settings, job.job_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "yoloserve.retrain", "run", "--job-id", job.job_id],
                    cwd=paths.ROOT,
                    env=settings.child_environment(registry.path),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives a gateway restart; killable as a group
                )
        except OSError as exc:
            finish(registry, job.job_id, "failed", f"could not start the job process: {exc}")
            raise
        registry.update_job(job.job_id, pid=proc.pid)
        # Reap it when it ends, so a long-lived starter (the gateway) collects no zombies.
        threading.Thread(target=proc.wait, name=f"reap-{job.job_id}", daemon=True).start()
        logger.info("retrain job %s started (pid %s, log %s)", job.job_id, proc.pid, log)
        return job.job_id


def run_foreground(
    settings: RetrainSettings, *, trigger: str = "cli", registry: Registry | None = None
) -> RetrainJob:
    """Record a job and run it in this process, holding the retrain lock (an operator's run).

    Raises:
        RetrainAlreadyRunning: another job holds the lock or is starting.
    """
    registry = registry or Registry(settings.registry_path)
    with _exclusive(settings, registry):
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger,
                                  pid=os.getpid())
        return run_job(job.job_id, settings, registry)


def run_job_process(
    job_id: str, settings: RetrainSettings, registry: Registry | None = None
) -> RetrainJob:
    """What the job process runs: hold the retrain lock, then ``run_job``.

    Raises:
        UnknownJob: no such job.
    """
    registry = registry or Registry(settings.registry_path)
    job = registry.get_job(job_id)
    lock = _lock(settings)
    try:
        # The starter holds the lock until it has written our pid: wait for it, briefly.
        lock.acquire(timeout=settings.lock_wait_s)
    except filelock.Timeout:
        if job.state not in ACTIVE_STATES:
            return job
        return finish(registry, job_id, "failed",
                       f"could not take {lock_path(settings)} in {settings.lock_wait_s:.0f} s")
    try:
        job = registry.get_job(job_id)
        if job.state != "queued":
            logger.warning("job %s is %s, not queued: nothing to run", job_id, job.state)
            return job
        return run_job(job_id, settings, registry)
    finally:
        lock.release()
