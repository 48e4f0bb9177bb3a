"""One real retrain job, end to end: real feedback files, the real job process, real Ultralytics
fine-tuning and evaluation, real packaging, and a real hot swap on the stack's TorchServe.

Run both ways the controller runs a job on one host: itself (``RETRAIN_LAUNCHER=queue``, the
stack's supervised ``python -m yoloserve.controller run``, as in ``make demo``) and handed to a
detached job process (``process``, the library default).

Kept short on purpose (1 epoch, 16 reference images, imgsz 320). The gate's tolerance is 1.0 so
that the candidate is promoted whatever one epoch makes of it: the gate's arithmetic is
unit-tested; here the promotion path itself (package, register, set-default) must work.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stack
from tests.integration.loop_support import (
    loaded_versions,
    restore_default,
    retrain_env,
    torchserve_settings,
    trainer_running,
    wait_no_active_job,
    write_feedback,
)
from tests.yoloserve.retrain.job_support import wait_final
from yoloserve.modelserver.registry import utcnow
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.store.settings import StoreSettings
from yoloserve.training.dataset import generate_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEEDBACK_IMAGES = 8


@pytest.mark.parametrize("launcher", ["queue", "process"])
def test_real_retrain_job_promotes_and_serves(stack: Stack, tmp_path: Path, launcher: str) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    ref = tmp_path / "shapes"
    generate_dataset(ref, n_train=16, n_val=8, n_test=0, seed=21)
    write_feedback(stack.data_dir / "feedback", FEEDBACK_IMAGES, seed=31)
    settings = RetrainSettings(
        epochs=1, imgsz=320, batch=8, ref_train_images=16, ref_eval_images=8,
        tolerance=1.0, timeout_s=900, drain_s=1.0,
        ref_dir=ref, feedback_dir=stack.data_dir / "feedback",
        store=StoreSettings(database_url=registry.store.url), store_dir=stack.store_dir,
        run_dir=stack.run_dir,
        torchserve=torchserve_settings(stack), launcher=launcher,
    )
    versions_before = {v.version for v in registry.load().versions}
    # The controller runs the job itself (queue) or hands it to a detached process (process).
    with trainer_running(stack, retrain_env(settings)):
        started = time.monotonic()
        # The intent, as POST /retrain records it.
        job_id = registry.record_job_if_idle(trigger="test", created_at=utcnow()).job_id
        try:
            _check_promoted(stack, settings, job_id, first, versions_before, started)
            ran_in = registry.get_job(job_id).pid
            if launcher == "queue":
                assert ran_in == stack.trainer_pid(), "the controller ran it"
            else:
                assert ran_in not in (None, stack.trainer_pid()), "a process of its own ran it"
        finally:
            wait_no_active_job(registry)
            restore_default(stack, first)


def _check_promoted(stack: Stack, settings: RetrainSettings, job_id: str, first: str,
                    versions_before: set[str], started: float) -> None:
    """The job succeeded, the registry tells its whole story, and its version serves alone."""
    registry = stack.registry
    job = wait_final(registry, job_id, timeout=900)
    wall_s = time.monotonic() - started
    log = job_log(settings, job_id).read_text(errors="replace")
    assert job.state == "succeeded", f"{job.reason}\n{log[-3000:]}"

    # The record tells the whole story.
    assert job.parent == first and job.trigger == "test"
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.data["ref_train"] == 16 and job.data["ref_eval"] == 8
    assert job.data["feedback_train"] + job.data["feedback_eval"] >= FEEDBACK_IMAGES
    for side in ("candidate", "current"):
        metrics = job.metrics[side]
        assert 0.0 <= metrics["map50"] <= 1.0 and 0.0 <= metrics["map50_95"] <= 1.0
        assert metrics["images"] == job.data["ref_eval"] + job.data["feedback_eval"]
    assert job.reason and "mAP50" in job.reason and "serves" in job.reason

    # Its progress: the last phase it reached, and one log line per phase and per epoch.
    assert job.progress is not None and job.progress.phase == "swapping"
    marks = [f"job {job_id}: {step}" for step in (
        "phase dataset", "phase training", "training epoch 0 of 1",
        "training epoch 1 of 1, ETA 0 s", "phase evaluating", "phase packaging", "phase swapping")]
    positions = [log.find(mark) for mark in marks]
    assert -1 not in positions and positions == sorted(positions), (positions, log[-3000:])

    # The registry is consistent: one new version, serving, with its lineage.
    data = registry.load()
    new = job.candidate_version
    assert new is not None and new not in versions_before
    assert {v.version for v in data.versions} == versions_before | {new}
    assert data.default_version == new
    record = data.get(new)
    assert record.status == "serving" and record.parent == first
    assert record.metrics["map50"] == job.metrics["candidate"]["map50"]
    assert record.trained_on == {"ref_images": 16,
                                 "feedback_images": job.data["feedback_train"],
                                 "manifest_sha256": record.trained_on["manifest_sha256"]}
    assert [v.version for v in data.versions if v.status == "serving"] == [new]

    # And TorchServe serves it, alone.
    assert loaded_versions(stack) == [new]
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    response = httpx.post(f"{stack.gateway_url}/predict", timeout=60,
                          files={"file": (sample.name, sample.read_bytes())})
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == new
    print(f"\nretrain job {job_id} ({settings.launcher}): {wall_s:.0f} s wall, candidate "
          f"mAP50 {job.metrics['candidate']['map50']:.3f} vs current "
          f"{job.metrics['current']['map50']:.3f}; v{new} serves")
