"""One trainer process, several retrain jobs: issue 26 (the second retrain of a running trainer
hung until its 30-minute deadline).

A trainer runs job after job in one process and packages each candidate there (ONNX export and
the parity check: torch on 2 threads, ONNX Runtime), so every job after the first starts its
training child from a process whose native thread pools exist. The first test queues three real
retrains (real Ultralytics fine-tuning and evaluation, real packaging with the ONNX export and its
parity check) through the stack's supervised trainer, one after the other; each must end and take
about as long as the first. The second runs its own trainer (``trainer_child``: the real CLI with
fake training, a short ``RETRAIN_TIMEOUT_S``) so that a hung training child can be left to its
deadline without touching the shared stack's trainer.

Kept short: 1 epoch, 8 reference and 4 feedback images, imgsz 320, ``RETRAIN_DEPLOY=false`` (the
hot swap is exercised by test_retrain_job.py; packaging, the step that warms the trainer, runs).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import Stack
from tests.integration.loop_support import (
    restore_default,
    retrain_env,
    trainer_running,
    wait_no_active_job,
    write_feedback,
)
from tests.support import store_settings
from tests.yoloserve.retrain import fakes
from tests.yoloserve.retrain.job_support import read_calls, wait_final
from yoloserve import paths
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.heartbeat import read_heartbeats
from yoloserve.retrain.jobs import start_job_process
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.store.engine import open_store
from yoloserve.store.settings import StoreSettings
from yoloserve.training.dataset import generate_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 3
# Each job may take at most twice as long as the first, plus this much for a loaded 2-core box
# (other processes share it). A hung job takes its whole timeout_s instead.
SLACK_S = 30.0
HUNG_TIMEOUT_S = 30.0


def _settings(tmp_path: Path, **fields: object) -> RetrainSettings:
    """Tiny real retrains on their own reference and feedback images."""
    ref, feedback = tmp_path / "shapes", tmp_path / "feedback"
    generate_dataset(ref, n_train=8, n_val=4, n_test=0, seed=41)
    write_feedback(feedback, 4, seed=43)
    return RetrainSettings(
        epochs=1, imgsz=320, batch=8, ref_train_images=8, ref_eval_images=4, tolerance=1.0,
        deploy=False, runtime="onnx", ref_dir=ref, feedback_dir=feedback, launcher="queue",
        **fields,  # type: ignore[arg-type]
    )


def _seconds(job: RetrainJob) -> float:
    assert job.started_at is not None and job.finished_at is not None
    return (job.finished_at - job.started_at).total_seconds()


def test_one_trainer_runs_real_retrains_in_a_row_each_as_fast_as_the_first(
    stack: Stack, tmp_path: Path
) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    settings = _settings(tmp_path, timeout_s=180,
                         store=StoreSettings(database_url=registry.store.url),
                         store_dir=stack.store_dir, run_dir=stack.run_dir)
    durations: list[float] = []
    try:
        with trainer_running(stack, retrain_env(settings)):
            trainer_pid = stack.trainer_pid()
            for n in range(JOBS):
                job_id = start_job_process(settings, trigger="test", registry=registry)
                job = wait_final(registry, job_id, timeout=settings.timeout_s + 120)
                log = job_log(settings, job_id).read_text(errors="replace")
                assert job.state in ("succeeded", "rejected"), f"{job.reason}\n{log[-3000:]}"
                assert job.pid == trainer_pid, "the same trainer process ran every job"
                assert f"job {job_id}: training epoch 1 of 1" in log, "the child's log relayed"
                assert job.candidate_version is not None
                record = registry.get(job.candidate_version)
                assert record.runtime == "onnx" and record.parity["passed"] is True
                durations.append(_seconds(job))
                print(f"\njob {n + 1} of {JOBS} ({job_id}) in trainer {trainer_pid}: "
                      f"{job.state} in {durations[-1]:.1f} s (v{job.candidate_version})")
            assert stack.trainer_pid() == trainer_pid, "the trainer never restarted"
    finally:
        wait_no_active_job(registry)
        restore_default(stack, first)

    bound = 2 * durations[0] + SLACK_S
    print(f"durations {[round(d, 1) for d in durations]} s; bound 2 x first + {SLACK_S:.0f} s "
          f"= {bound:.1f} s")
    assert all(d <= bound for d in durations[1:]), (durations, bound)


def test_a_hung_training_child_fails_at_the_deadline_and_the_trainer_runs_the_next_job(
    stack: Stack, tmp_path: Path
) -> None:
    wait_no_active_job(stack.registry)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(stack.store_dir, models / "store")
    settings = _settings(tmp_path, timeout_s=HUNG_TIMEOUT_S, store=store_settings(models),
                         store_dir=models / "store", run_dir=tmp_path / "run", trainer_poll_s=0.2)
    registry = Registry(open_store(settings.store.url))
    versions = stack.registry.load()
    with registry.update() as data:  # the stack's versions, apart
        data.name, data.classes = versions.name, versions.classes
        data.default_version, data.versions = versions.default_version, versions.versions
    calls, hold = tmp_path / "calls.jsonl", tmp_path / "hold"
    env = settings.child_environment()
    env[fakes.ENV] = fakes.FakeTraining(str(calls), str(stack.weights), hold=str(hold)).to_env()
    settings.run_dir.mkdir(parents=True)
    with (settings.run_dir / "trainer.log").open("ab") as out:
        trainer = subprocess.Popen([sys.executable, "-m", "tests.yoloserve.retrain.trainer_child"],
                                   cwd=paths.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not any(b.pid == trainer.pid for b in read_heartbeats(settings)):
            assert trainer.poll() is None and time.monotonic() < deadline, "no trainer beat"
            time.sleep(0.2)

        hold.touch()  # the first job's training never ends
        hung = start_job_process(settings, trigger="test", registry=registry)
        job = wait_final(registry, hung, timeout=HUNG_TIMEOUT_S + 60)
        assert job.state == "failed", job.reason
        assert job.reason == f"timed out after {HUNG_TIMEOUT_S:.0f} s (training/evaluation killed)"
        assert _seconds(job) < HUNG_TIMEOUT_S + 15
        [train] = [c for c in read_calls(calls) if c["call"] == "train"]
        assert train["job_id"] == hung and train["trainer_pid"] == trainer.pid
        deadline = time.monotonic() + 10
        while psutil.pid_exists(int(train["pid"])):
            assert time.monotonic() < deadline, "the hung training child outlived its deadline"
            time.sleep(0.1)

        hold.unlink()
        nxt = start_job_process(settings, trigger="test", registry=registry)
        job = wait_final(registry, nxt, timeout=180)
        assert job.state == "succeeded", f"{job.reason}\n{job_log(settings, nxt).read_text()}"
        assert job.pid == trainer.pid and trainer.poll() is None, "the same trainer went on"
        assert [c["job_id"] for c in read_calls(calls) if c["call"] == "train"] == [hung, nxt]
        print(f"\nhung job {hung}: failed at its {HUNG_TIMEOUT_S:.0f} s deadline; next job {nxt} "
              f"{job.state} in {_seconds(job):.1f} s by the same trainer")
    finally:
        trainer.kill()
        trainer.wait(30)
