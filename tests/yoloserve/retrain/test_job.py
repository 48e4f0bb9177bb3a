"""One retrain job's outcomes (yoloserve.retrain.job) without real training: lineage, the gate's
rejection, failure safety, the timeout, a failed swap, missing data or default version.

The fixtures (fake training, a packaged version 1) are in conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil

from devstack.ports import free_port
from tests.yoloserve.retrain.job_support import queue_job, read_calls
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.retrain.job import run_job
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import Store


def test_promoted_candidate_is_packaged_with_lineage(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training(candidate=0.9, current=0.85)
    job_id = queue_job(registry)
    job = run_job(job_id, settings, registry)

    assert job.state == "succeeded", job.reason
    assert job.candidate_version == "2" and job.parent == "1"
    assert "not deployed" in (job.reason or "")
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.metrics["candidate"]["map50"] == 0.9 and job.metrics["current"]["map50"] == 0.85
    assert job.data == {"ref_train": 6, "ref_eval": 3, "feedback_train": job.data["feedback_train"],
                        "feedback_eval": job.data["feedback_eval"]}
    assert job.data["feedback_train"] + job.data["feedback_eval"] == 6

    v2 = registry.get("2")
    assert v2.parent == "1" and v2.status == "ready"
    assert v2.runtime == registry.get("1").runtime == "onnx", "a retrain keeps the runtime"
    assert v2.parity["passed"] is True
    assert v2.metrics["map50"] == 0.9 and v2.metrics["eval_images"] == 5
    assert v2.trained_on == {"ref_images": 6, "feedback_images": job.data["feedback_train"],
                             "manifest_sha256": v2.trained_on["manifest_sha256"]}
    assert len(v2.trained_on["manifest_sha256"]) == 64, "the dataset manifest names its data"
    eval_images = job.data["ref_eval"] + job.data["feedback_eval"]
    assert v2.metrics["eval_set"]["images"] == eval_images
    assert job_id in v2.metrics["eval_set"]["name"]
    assert v2.mlflow_run_id is None, "no MLFLOW_TRACKING_URI: no tracking, nothing breaks"
    assert (settings.store_dir / v2.mar).is_file()
    assert registry.load().default_version == "1", "not deployed: the default does not move"

    train, *evals = read_calls(calls)
    assert train["call"] == "train" and train["epochs"] == 1
    assert (train["optimizer"], train["lr0"], train["warmup_epochs"]) == ("SGD", 0.002, 0.0)
    assert train["sha256"] == registry.get("1").sha256, "fine-tuned from the serving weights"
    assert {e["weights"].rsplit("/", 1)[-1] for e in evals} == {"last.pt", "parent.pt"}
    assert len({e["data_yaml"] for e in evals} | {train["data_yaml"]}) == 1
    assert {e["split"] for e in evals} == {"test"}, "both judged on the same held-out split"
    eval_list = (settings.run_dir / "retrain" / job_id / "data" / "eval.txt").read_text()
    train_list = (settings.run_dir / "retrain" / job_id / "data" / "train.txt").read_text()
    assert not set(eval_list.split()) & set(train_list.split())


def test_gate_rejection_records_a_rejected_version(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    fake_training(candidate=0.5, current=0.85)
    job = run_job(queue_job(registry), settings, registry)

    assert job.state == "rejected"
    assert job.reason is not None and "0.5000 < current 0.8500" in job.reason
    assert job.candidate_version == "2"
    assert registry.get("2").status == "rejected"
    data = registry.load()
    assert data.default_version == "1" and data.get("1").status == "serving"


def test_training_failure_fails_the_job_and_changes_nothing(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    fake_training(train_error="CUDA out of cheese")
    before = registry.load()
    job = run_job(queue_job(registry), settings, registry)

    assert job.state == "failed"
    assert job.reason == "RuntimeError: CUDA out of cheese"
    assert job.finished_at is not None and job.candidate_version is None
    after = registry.load()
    assert after.versions == before.versions and after.default_version == "1"
    assert sorted(p.name for p in settings.store_dir.glob("*.mar")) == ["yolo_v1.mar"]


def test_timeout_kills_training_and_fails_the_job(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training(train_sleep=120)
    # Long enough for the spawned child to start (an interpreter and its imports) and train.
    settings = settings.model_copy(update={"timeout_s": 10.0})
    start = time.monotonic()
    job = run_job(queue_job(registry), settings, registry)

    assert time.monotonic() - start < 40
    assert job.state == "failed" and "timed out" in (job.reason or "")
    (train,) = read_calls(calls)
    assert not psutil.pid_exists(train["pid"]), "the training child was killed"
    assert registry.load().default_version == "1" and len(registry.load().versions) == 1


def test_swap_failure_keeps_the_old_version_serving(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    fake_training(candidate=0.9, current=0.85)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the swap cannot start
    settings = settings.model_copy(update={
        "deploy": True,
        "torchserve": TorchServeSettings(management_url=closed, inference_url=closed),
    })
    job = run_job(queue_job(registry), settings, registry)

    assert job.state == "failed"
    assert "hot swap failed" in (job.reason or "") and "v1 keeps serving" in (job.reason or "")
    assert job.candidate_version == "2"
    data = registry.load()
    assert data.default_version == "1" and data.get("2").status == "ready"


def test_no_data_fails_cleanly(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path],
    tmp_path: Path,
) -> None:
    calls = fake_training()
    empty = tmp_path / "empty-ref"
    (empty / "images" / "train").mkdir(parents=True)
    settings = settings.model_copy(update={"ref_dir": empty, "feedback_dir": tmp_path / "none"})
    job = run_job(queue_job(registry), settings, registry)
    assert job.state == "failed" and "no usable dataset" in (job.reason or "")
    assert read_calls(calls) == [], "nothing trained"


def test_no_default_version_fails_cleanly(
    settings: RetrainSettings, fake_training: Callable[..., Path], tmp_path: Path
) -> None:
    fake_training()
    empty = Registry(Store.sqlite(tmp_path / "other" / "yoloserve.db"))
    job = run_job(queue_job(empty), settings, empty)
    assert job.state == "failed" and "no default version" in (job.reason or "")


def test_an_int8_candidate_is_calibrated_on_the_jobs_images_and_gated_on_accuracy(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    fake_training(candidate=0.9, current=0.85)
    settings = settings.model_copy(update={"runtime": "onnx-int8"})
    job_id = queue_job(registry)
    job = run_job(job_id, settings, registry)

    assert job.state == "succeeded", job.reason
    v2 = registry.get("2")
    assert v2.runtime == "onnx-int8" and v2.parity == {}
    # The tiny reference set has no test split: the job's held-out split is the gate's set.
    assert v2.accuracy["passed"] is True and v2.accuracy["set"]["name"] == f"{job_id} held-out"
    assert v2.accuracy["images"] == job.data["ref_eval"] + job.data["feedback_eval"]
