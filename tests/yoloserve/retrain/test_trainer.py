"""The trainer service (yoloserve.retrain.trainer) and the ``queue`` launcher's liveness.

In-process tests use conftest's fake training; the ones that signal or kill a trainer run real
``python -m yoloserve.retrain trainer`` processes (``trainer_child``: the same CLI with the fakes
installed) on the test's registry and run dir, with heartbeats a few tenths of a second apart.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock
import psutil
import pytest

from tests.yoloserve.retrain import fakes
from tests.yoloserve.retrain.fakes import FakeTraining
from tests.yoloserve.retrain.job_support import queue_job, read_calls
from yoloserve import paths
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain.heartbeat import Heartbeat, Heartbeater, heartbeat_dir, read_heartbeats
from yoloserve.retrain.jobs import claim_job, reap_stale_jobs, run_job_process, start_job_process
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.queue import NO_TRAINER, QueueLauncher
from yoloserve.retrain.settings import RetrainSettings, job_log, lock_path
from yoloserve.retrain.trainer import Trainer


@pytest.fixture
def queued(settings: RetrainSettings) -> RetrainSettings:
    """The ``queue`` launcher, with a fast trainer: stale after 4 x 0.3 s.

    Candidates are packaged for TorchScript here (the quickest export): these tests are about who
    runs a job, and an ONNX export's seconds of full CPU, on a loaded 2-core box, can starve a
    0.3 s heartbeat.
    """
    return settings.model_copy(update={"launcher": "queue", "trainer_poll_s": 0.1,
                                       "trainer_heartbeat_s": 0.3,
                                       "trainer_stale_heartbeats": 4, "runtime": "torchscript"})


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def _state(registry: Registry, job_id: str) -> str:
    return registry.get_job(job_id).state


def _final(registry: Registry, job_id: str, timeout: float = 60) -> RetrainJob:
    _wait(f"job {job_id} final", lambda: _state(registry, job_id) not in ("queued", "running"),
          timeout)
    return registry.get_job(job_id)


# ---------------------------------------------------------------------------- in process


def test_trainer_claims_and_runs_queued_jobs_oldest_first(
    queued: RetrainSettings, registry: Registry, fake_training: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # what the CLI logs at; the job's log gets it too
    calls = fake_training(candidate=0.9, current=0.85)
    first, second = queue_job(registry), queue_job(registry)
    trainer = Trainer(queued, registry, trainer_id="t-unit")

    with trainer.heartbeat:
        done = trainer.step()
        assert done is not None and done.job_id == first
        assert done.state == "succeeded" and "not deployed" in (done.reason or "")
        assert done.pid == os.getpid() and done.candidate_version == "2"
        assert _state(registry, second) == "queued"
        [beat] = read_heartbeats(queued)
        assert beat.trainer_id == "t-unit" and beat.job_id is None, "idle again after the job"
        assert trainer.step() is not None and _state(registry, second) == "succeeded"
        assert trainer.step() is None, "nothing queued"
    assert read_heartbeats(queued) == [], "a trainer that stops removes its heartbeat"
    assert [c["call"] for c in read_calls(calls)].count("train") == 2
    assert "claimed by t-unit" in job_log(queued, first).read_text()


def test_queued_job_waits_for_a_trainer_and_without_one_is_reaped_with_the_reason(
    queued: RetrainSettings, registry: Registry
) -> None:
    job_id = start_job_process(queued, trigger="test", registry=registry)
    job = registry.get_job(job_id)
    assert job.state == "queued" and job.pid is None, "the queue launcher starts nothing"
    launcher = launcher_from_settings(queued)
    assert isinstance(launcher, QueueLauncher)

    with Heartbeater(queued, trainer_id="t-idle"):
        assert reap_stale_jobs(registry, queued_grace_s=0, launcher=launcher) == []
        with pytest.raises(RetrainAlreadyRunning, match=job_id):
            start_job_process(queued, trigger="test", registry=registry)

    assert reap_stale_jobs(registry, launcher=launcher) == [], "within the start grace"
    assert reap_stale_jobs(registry, queued_grace_s=0, launcher=launcher) == [job_id]
    job = registry.get_job(job_id)
    assert job.state == "failed" and job.reason == NO_TRAINER
    assert "no trainer is running: start the trainer service" in NO_TRAINER


def test_a_running_job_lives_while_the_heartbeat_naming_it_is_fresh(
    queued: RetrainSettings, registry: Registry
) -> None:
    job_id = queue_job(registry)
    registry.update_job(job_id, state="running", started_at=utcnow(), pid=1)
    heartbeat_dir(queued).mkdir(parents=True)

    def beat(age_s: float, job: str | None) -> None:
        record = Heartbeat(trainer_id="t-far", hostname="other-box", pid=1, job_id=job,
                           at=time.time() - age_s, started_at=0.0)
        (heartbeat_dir(queued) / "t-far.json").write_text(record.model_dump_json())

    launcher = QueueLauncher(queued)
    beat(0.0, job_id)
    assert reap_stale_jobs(registry, launcher=launcher) == []
    beat(0.0, None)  # its trainer lives but runs something else: the job was lost
    assert launcher.liveness([registry.get_job(job_id)])[job_id].state == "dead"
    beat(60.0, job_id)  # killed: the beat names the job, but is old
    assert reap_stale_jobs(registry, launcher=launcher) == [job_id]
    reason = registry.get_job(job_id).reason or ""
    assert "t-far (host other-box, pid 1) stopped beating" in reason


def test_claim_leaves_the_job_queued_while_the_lock_is_held(
    queued: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training()
    job_id = queue_job(registry)
    queued.run_dir.mkdir(parents=True)
    with filelock.FileLock(str(lock_path(queued)), thread_local=False):
        assert claim_job(job_id, queued, registry) is None
        # A job process that finds another one running it leaves that job alone.
        registry.update_job(job_id, state="running", pid=1)
        quick = queued.model_copy(update={"lock_wait_s": 0.0})
        assert run_job_process(job_id, quick, registry).state == "running"
    assert _state(registry, job_id) == "running"
    assert read_calls(calls) == []


# ------------------------------------------------------------------------ real processes


class Trainers:
    """Real trainer processes (``trainer_child``) on one test's settings."""

    def __init__(self, settings: RetrainSettings, calls: Path, weights: Path) -> None:
        self.settings, self.calls, self.weights = settings, calls, weights
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, train_sleep: float = 0.0) -> subprocess.Popen[bytes]:
        log = self.settings.run_dir / f"trainer-{len(self.procs)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = self.settings.child_environment()
        env[fakes.ENV] = FakeTraining(str(self.calls), str(self.weights),
                                      train_sleep=train_sleep).to_env()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.yoloserve.retrain.trainer_child"],
                cwd=paths.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        _wait("the trainer's first heartbeat",
              lambda: any(b.pid == proc.pid for b in read_heartbeats(self.settings)), 30)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def trainers(
    queued: RetrainSettings, tmp_path: Path, default_weights: Path
) -> Iterator[Trainers]:
    group = Trainers(queued, tmp_path / "calls.jsonl", default_weights)
    try:
        yield group
    finally:
        group.stop()


def _train_calls(group: Trainers) -> list[dict[str, object]]:
    return [c for c in read_calls(group.calls) if c["call"] == "train"]


def test_a_killed_trainer_leaves_its_job_failed_and_the_restarted_one_runs_the_next(
    queued: RetrainSettings, registry: Registry, trainers: Trainers
) -> None:
    first = trainers.start(train_sleep=120)
    killed = start_job_process(queued, trigger="test", registry=registry)
    _wait("the job running", lambda: _state(registry, killed) == "running"
          and len(_train_calls(trainers)) == 1)
    [call] = _train_calls(trainers)
    assert call["trainer_pid"] == first.pid and call["job_id"] == killed

    first.kill()
    first.wait()
    launcher = QueueLauncher(queued)
    # Its last beat is fresh for a moment, then says nothing: only then is the job dead.
    _wait("the job reaped", lambda: reap_stale_jobs(registry, launcher=launcher) == [killed], 30)
    job = registry.get_job(killed)
    assert job.state == "failed" and "stopped beating" in (job.reason or "")
    _wait("the training child gone", lambda: not psutil.pid_exists(int(str(call["pid"]))), 10)

    # Queued while no trainer runs: it waits (the start grace) for the restarted trainer.
    nxt = start_job_process(queued, trigger="test", registry=registry)
    assert _state(registry, nxt) == "queued"
    second = trainers.start()
    job = _final(registry, nxt)
    assert job.state == "succeeded", job.reason
    assert [c["trainer_pid"] for c in _train_calls(trainers)] == [first.pid, second.pid]


def test_two_trainers_never_run_one_job_twice(
    queued: RetrainSettings, registry: Registry, trainers: Trainers
) -> None:
    procs = [trainers.start(train_sleep=1.0), trainers.start(train_sleep=1.0)]
    assert len(read_heartbeats(queued)) == 2
    ran = []
    for _ in range(3):
        job_id = start_job_process(queued, trigger="test", registry=registry)
        with pytest.raises(RetrainAlreadyRunning):  # queued or running: one at a time
            start_job_process(queued, trigger="test", registry=registry)
        final = _final(registry, job_id)
        assert final.state == "succeeded", final.reason
        ran.append(job_id)
    calls = _train_calls(trainers)
    assert sorted(str(c["job_id"]) for c in calls) == sorted(ran), "each job trained once"
    assert {c["trainer_pid"] for c in calls} <= {p.pid for p in procs}
    assert all(p.poll() is None for p in procs)


def test_sigterm_stops_the_trainer_and_records_its_job_failed(
    queued: RetrainSettings, registry: Registry, trainers: Trainers
) -> None:
    proc = trainers.start(train_sleep=120)
    job_id = start_job_process(queued, trigger="test", registry=registry)
    _wait("the job running", lambda: len(_train_calls(trainers)) == 1)
    [call] = _train_calls(trainers)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    job = registry.get_job(job_id)
    assert job.state == "failed" and job.reason == "the job process was stopped"
    assert read_heartbeats(queued) == [], "its heartbeat is removed"
    _wait("the training child gone", lambda: not psutil.pid_exists(int(str(call["pid"]))), 10)
    log = (queued.run_dir / "trainer-0.log").read_text()
    assert "stopped by signal" in log
