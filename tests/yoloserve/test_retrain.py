"""The retrain job without real training: gate, failure safety, timeout, the one-job lock.

Only ``training.train`` and ``training.evaluate`` are replaced (the real ones run in
tests/integration/test_retrain_job.py); registry, packaging (torch-model-archiver), the forked
training child, the job subprocess and the file lock are the real ones. The fakes run in the
forked child, so they report what they saw through files, not through memory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import filelock
import psutil
import pytest

from devstack.torchserve import free_port
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.packaging import package, sha256_file
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain.gate import gate
from yoloserve.retrain.job import run_job
from yoloserve.retrain.jobs import reap_stale_jobs, run_job_process, start_job_process
from yoloserve.retrain.settings import RetrainSettings, job_log, lock_path
from yoloserve.training import train as training
from yoloserve.training.dataset import generate_dataset, iter_images, yolo_label_lines
from yoloserve.training.train import EvalMetrics


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, default_weights: Path) -> Path:
    """A models folder with version 1 packaged from the shipped weights, and a tiny dataset."""
    root = tmp_path_factory.mktemp("retrain-template")
    package(default_weights, Registry(root / "models" / "registry.json"),
            store_dir=root / "models" / "store")
    generate_dataset(root / "shapes", n_train=6, n_val=3, n_test=0, seed=5)
    feedback = root / "feedback"
    (feedback / "images").mkdir(parents=True)
    (feedback / "labels").mkdir()
    for i, (image, shapes) in enumerate(iter_images(6, seed=77)):
        image.save(feedback / "images" / f"fb-{i}.jpg")
        (feedback / "labels" / f"fb-{i}.txt").write_text(
            "\n".join(yolo_label_lines(shapes, *image.size)) + "\n"
        )
    return root


@pytest.fixture
def settings(template: Path, tmp_path: Path) -> RetrainSettings:
    shutil.copytree(template / "models", tmp_path / "models")
    return RetrainSettings(
        ref_dir=template / "shapes",
        feedback_dir=template / "feedback",
        registry_path=tmp_path / "models" / "registry.json",
        store_dir=tmp_path / "models" / "store",
        run_dir=tmp_path / "run",
        ref_train_images=6,
        ref_eval_images=3,
        epochs=1,
        deploy=False,
        timeout_s=120,
    )


@pytest.fixture
def registry(settings: RetrainSettings) -> Registry:
    return Registry(settings.registry_path)


def _metrics(map50: float) -> EvalMetrics:
    return EvalMetrics(map50=map50, map50_95=map50 * 0.8, precision=0.9, recall=0.8, images=5)


@pytest.fixture
def fake_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, default_weights: Path
) -> Callable[..., Path]:
    """Install fakes; returns the file where they log their calls (one JSON per line)."""
    calls = tmp_path / "calls.jsonl"

    def install(candidate: float = 0.9, current: float = 0.85, train_error: str | None = None,
                train_sleep: float = 0.0) -> Path:
        def log(**entry: Any) -> None:
            with calls.open("a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")

        def fake_train(data_yaml: Path, out_dir: Path, *, weights: Path | None = None,
                       name: str = "train", **kw: Any) -> Path:
            log(call="train", data_yaml=data_yaml, weights=weights, pid=os.getpid(),
                sha256=sha256_file(weights) if weights else None, **kw)
            if train_sleep:
                time.sleep(train_sleep)
            if train_error:
                raise RuntimeError(train_error)
            target = out_dir / name / "weights"
            target.mkdir(parents=True)
            # Real weights, so that packaging the candidate really works.
            shutil.copy(default_weights, target / "best.pt")
            shutil.copy(default_weights, target / "last.pt")
            return target / "best.pt"

        def fake_evaluate(weights: Path, data_yaml: Path, **kw: Any) -> EvalMetrics:
            log(call="evaluate", weights=weights, data_yaml=data_yaml, **kw)
            return _metrics(current if weights.name == "parent.pt" else candidate)

        monkeypatch.setattr(training, "train", fake_train)
        monkeypatch.setattr(training, "evaluate", fake_evaluate)
        return calls

    return install


def _calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _job(registry: Registry) -> str:
    return registry.record_job(state="queued", created_at=utcnow(), trigger="test").job_id


# --------------------------------------------------------------------------------- the gate


@pytest.mark.parametrize(
    ("candidate", "current", "tolerance", "promote"),
    [
        (0.90, 0.85, 0.01, True),   # better
        (0.85, 0.85, 0.00, True),   # equal is enough
        (0.845, 0.85, 0.01, True),  # within tolerance
        (0.84, 0.85, 0.01, True),   # exactly at the bar
        (0.83, 0.85, 0.01, False),  # below the bar
        (0.00, 0.00, 0.00, True),   # nothing learned either way: not worse
        (math.nan, 0.85, 0.01, False),
        (0.10, math.nan, 0.01, True),
    ],
)
def test_gate(candidate: float, current: float, tolerance: float, promote: bool) -> None:
    decision = gate({"map50": candidate}, {"map50": current}, tolerance)
    assert decision.promote is promote
    assert "mAP50" in decision.reason


# ------------------------------------------------------------------------------ job outcomes


def test_promoted_candidate_is_packaged_with_lineage(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training(candidate=0.9, current=0.85)
    job_id = _job(registry)
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
    assert v2.metrics["map50"] == 0.9 and v2.metrics["eval_images"] == 5
    assert v2.trained_on == {"ref_images": 6, "feedback_images": job.data["feedback_train"]}
    assert (settings.store_dir / v2.mar).is_file()
    assert registry.load().default_version == "1", "not deployed: the default does not move"

    train, *evals = _calls(calls)
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
    job = run_job(_job(registry), settings, registry)

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
    job = run_job(_job(registry), settings, registry)

    assert job.state == "failed"
    assert job.reason == "RuntimeError: CUDA out of cheese"
    assert job.finished_at is not None and job.candidate_version is None
    after = registry.load()
    assert after.versions == before.versions and after.default_version == "1"
    assert sorted(p.name for p in settings.store_dir.glob("*.mar")) == ["yolo_v1.mar"]


def test_timeout_kills_training_and_fails_the_job(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    calls = fake_training(train_sleep=60)
    settings = settings.model_copy(update={"timeout_s": 2.0})
    start = time.monotonic()
    job = run_job(_job(registry), settings, registry)

    assert time.monotonic() - start < 20
    assert job.state == "failed" and "timed out" in (job.reason or "")
    (train,) = _calls(calls)
    assert not psutil.pid_exists(train["pid"]), "the training child was killed"
    assert registry.load().default_version == "1" and len(registry.load().versions) == 1


def test_swap_failure_keeps_the_old_version_serving(
    settings: RetrainSettings, registry: Registry, fake_training: Callable[..., Path]
) -> None:
    fake_training(candidate=0.9, current=0.85)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the swap cannot start
    settings = settings.model_copy(update={
        "deploy": True, "management_url": closed, "inference_url": closed,
    })
    job = run_job(_job(registry), settings, registry)

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
    job = run_job(_job(registry), settings, registry)
    assert job.state == "failed" and "no usable dataset" in (job.reason or "")
    assert _calls(calls) == [], "nothing trained"


def test_no_default_version_fails_cleanly(
    settings: RetrainSettings, fake_training: Callable[..., Path], tmp_path: Path
) -> None:
    fake_training()
    empty = Registry(tmp_path / "other" / "registry.json")
    job = run_job(_job(empty), settings, empty)
    assert job.state == "failed" and "no default version" in (job.reason or "")


# --------------------------------------------------------------------- one job at a time


def _wait_final(registry: Registry, job_id: str, timeout: float = 60) -> RetrainJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = registry.get_job(job_id)
        if job.state not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {registry.get_job(job_id).state}")


def test_second_start_is_refused_while_the_first_job_process_lives(
    settings: RetrainSettings, tmp_path: Path
) -> None:
    # A registry without a default version: the real job process starts, then fails fast.
    registry = Registry(tmp_path / "bare" / "registry.json")
    first = start_job_process(settings, trigger="test", registry=registry)
    assert registry.get_job(first).state in ("queued", "running")
    assert registry.get_job(first).pid is not None
    with pytest.raises(RetrainAlreadyRunning, match=first):
        start_job_process(settings, trigger="test", registry=registry)

    job = _wait_final(registry, first)
    assert job.state == "failed" and "no default version" in (job.reason or "")
    assert job.trigger == "test" and job.started_at is not None
    assert "no default version" in job_log(settings, first).read_text()

    second = start_job_process(settings, trigger="test", registry=registry)
    assert second != first
    _wait_final(registry, second)


def test_held_lock_refuses_a_start(settings: RetrainSettings, registry: Registry) -> None:
    settings.run_dir.mkdir(parents=True)
    with filelock.FileLock(str(lock_path(settings)), thread_local=False):
        with pytest.raises(RetrainAlreadyRunning):
            start_job_process(settings, trigger="test", registry=registry)
    assert registry.load().jobs == [], "a refused start records nothing"


def test_a_killed_job_process_frees_the_lock_and_is_marked_failed(
    settings: RetrainSettings, registry: Registry
) -> None:
    job_id = _job(registry)
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
    assert "no usable dataset" in (_wait_final(registry, new).reason or "")


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
    job_id = _job(registry)
    registry.update_job(job_id, state="failed", reason="reaped")
    job = run_job_process(job_id, settings, registry)
    assert job.state == "failed" and job.reason == "reaped"
    assert _calls(calls) == []


def test_settings_reach_the_job_process_through_its_environment(
    settings: RetrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = settings.child_environment(Path("/elsewhere/registry.json"))
    for key, value in env.items():
        if key.startswith("RETRAIN_"):
            monkeypatch.setenv(key, value)
    again = RetrainSettings()
    assert again.model_dump() == {
        **settings.model_dump(), "registry_path": Path("/elsewhere/registry.json")
    }
