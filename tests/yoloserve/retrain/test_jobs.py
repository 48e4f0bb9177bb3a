"""One job at a time (yoloserve.retrain.jobs): the job process, the lock, stale jobs reaped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import filelock
import pytest

from tests.yoloserve.retrain.job_support import queue_job, read_calls, wait_final
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import Registry, utcnow
from yoloserve.retrain.jobs import reap_stale_jobs, run_job_process, start_job_process
from yoloserve.retrain.settings import RetrainSettings, job_log, lock_path
from yoloserve.store.engine import Store


def test_second_start_is_refused_while_the_first_job_process_lives(
    settings: RetrainSettings, tmp_path: Path
) -> None:
    # A registry without a default version: the real job process starts, then fails fast.
    registry = Registry(Store.sqlite(tmp_path / "bare" / "yoloserve.db"))
    first = start_job_process(settings, trigger="test", registry=registry)
    assert registry.get_job(first).state in ("queued", "running")
    assert registry.get_job(first).pid is not None
    with pytest.raises(RetrainAlreadyRunning, match=first):
        start_job_process(settings, trigger="test", registry=registry)

    job = wait_final(registry, first, 60, poll_s=0.2)
    assert job.state == "failed" and "no default version" in (job.reason or "")
    assert job.trigger == "test" and job.started_at is not None
    assert "no default version" in job_log(settings, first).read_text()

    second = start_job_process(settings, trigger="test", registry=registry)
    assert second != first
    wait_final(registry, second, 60, poll_s=0.2)


def test_held_lock_refuses_a_start(settings: RetrainSettings, registry: Registry) -> None:
    settings.run_dir.mkdir(parents=True)
    with filelock.FileLock(str(lock_path(settings)), thread_local=False):
        with pytest.raises(RetrainAlreadyRunning):
            start_job_process(settings, trigger="test", registry=registry)
    assert registry.load().jobs == [], "a refused start records nothing"


def test_a_killed_job_process_frees_the_lock_and_is_marked_failed(
    settings: RetrainSettings, registry: Registry
) -> None:
    job_id = queue_job(registry)
    settings.run_dir.mkdir(parents=True)
    # Stands in for a job process: holds the lock, has the job id in its command line.
    holder = subprocess.Popen([
        sys.executable, "-c",
        "import sys, time, filelock\n"
        "lock = filelock.FileLock(sys.argv[1], thread_local=False); lock.acquire()\n"
        "print('locked', flush=True); time.sleep(120)\n",
        str(lock_path(settings)), job_id,
    ], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    registry.update_job(job_id, state="running", pid=holder.pid, started_at=utcnow())

    assert reap_stale_jobs(registry) == [], "alive: not stale"
    with pytest.raises(RetrainAlreadyRunning, match=job_id):
        start_job_process(settings, trigger="test", registry=registry)

    holder.kill()
    holder.wait()
    assert reap_stale_jobs(registry) == [job_id]
    job = registry.get_job(job_id)
    assert job.state == "failed" and "ended without finishing" in (job.reason or "")
    # The lock died with its holder: a new job starts (and fails fast: no training data here).
    empty = settings.run_dir / "empty-ref"
    (empty / "images" / "train").mkdir(parents=True)
    no_data = settings.model_copy(update={"ref_dir": empty, "feedback_dir": empty / "none"})
    new = start_job_process(no_data, trigger="test", registry=registry)
    assert new != job_id
    assert "no usable dataset" in (wait_final(registry, new, 60, poll_s=0.2).reason or "")


def test_stale_queued_and_running_jobs(registry: Registry) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_running = registry.record_job(state="running", pid=dead.pid).job_id
    never_started = registry.record_job(state="queued", created_at=utcnow()).job_id
    alive = registry.record_job(state="running", pid=os.getpid()).job_id
    done = registry.record_job(state="succeeded", pid=dead.pid).job_id

    assert reap_stale_jobs(registry) == [stale_running]
    assert registry.get_job(never_started).state == "queued", "within the start grace period"
    assert reap_stale_jobs(registry, queued_grace_s=0) == [never_started]
    assert registry.get_job(alive).state == "running"
    assert registry.get_job(done).state == "succeeded"
    assert reap_stale_jobs(registry) == []


def test_job_process_runs_only_queued_jobs(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training()
    job_id = queue_job(registry)
    registry.update_job(job_id, state="failed", reason="reaped")
    job = run_job_process(job_id, settings, registry)
    assert job.state == "failed" and job.reason == "reaped"
    assert read_calls(calls) == []
