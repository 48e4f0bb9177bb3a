"""Retrain progress (yoloserve.retrain.progress): phases, epoch i of N and the ETA, recorded in the
job's registry record and its log.

The reporter is driven with a scripted clock first; then a whole job with fake training whose
fake ``training.train`` calls the callbacks as Ultralytics' trainer does; then real Ultralytics
training (slow) calls them itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.ports import free_port
from tests.yoloserve.retrain.job_support import queue_job, read_calls
from yoloserve.modelserver.registry import (
    Registry,
    RegistryData,
    RetrainJob,
    RetrainProgress,
    open_registry,
)
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.retrain.job import run_job
from yoloserve.retrain.progress import ProgressReporter, chain_callbacks, epoch_eta
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import Store
from yoloserve.training import train as training


@pytest.mark.parametrize(
    ("durations", "epoch", "epochs", "eta"),
    [
        ([], 0, 8, None),  # nothing measured yet: no guess
        ([30.0], 1, 8, 210.0),
        ([30.0, 34.0], 2, 8, 192.0),  # the mean of what was measured
        ([30.0] * 8, 8, 8, 0.0),
        ([30.0], 9, 8, 0.0),  # never negative
    ],
)
def test_epoch_eta(durations: list[float], epoch: int, epochs: int, eta: float | None) -> None:
    assert epoch_eta(durations, epoch, epochs) == eta


def _scripted(values: list[float]) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The job's log, as the trainer writes it: a root handler (the training child's records are
    relayed to it)."""
    path = tmp_path / "job.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def test_callbacks_record_each_epoch_with_an_eta(registry: Registry, log_file: Path) -> None:
    job_id = queue_job(registry)
    reporter = ProgressReporter(registry, job_id, clock=_scripted([100.0, 130.0, 164.0, 196.0]))
    callbacks = reporter.ultralytics_callbacks()
    trainer = SimpleNamespace(epoch=0, epochs=3)
    seen: list[RetrainProgress | None] = []

    callbacks["on_train_start"](trainer)
    seen.append(registry.get_job(job_id).progress)
    for epoch in range(3):
        trainer.epoch = epoch
        callbacks["on_fit_epoch_end"](trainer)
        seen.append(registry.get_job(job_id).progress)
    trainer.epoch = 3  # Ultralytics' final validation of best.pt reports as one epoch more
    callbacks["on_fit_epoch_end"](trainer)

    assert [(p.phase, p.epoch, p.epochs, p.eta_s) for p in seen if p] == [
        ("training", 0, 3, None),
        ("training", 1, 3, 60.0),  # 30 s measured, 2 left
        ("training", 2, 3, 32.0),  # mean of 30 and 34 s, 1 left
        ("training", 3, 3, 0.0),
    ]
    assert registry.get_job(job_id).progress == seen[-1], "the final validation wrote nothing"
    assert log_file.read_text().splitlines() == [
        f"job {job_id}: training epoch 0 of 3",
        f"job {job_id}: training epoch 1 of 3, ETA 60 s",
        f"job {job_id}: training epoch 2 of 3, ETA 32 s",
        f"job {job_id}: training epoch 3 of 3, ETA 0 s",
    ]


def test_a_busy_registry_costs_the_progress_line_not_the_job(
    settings: RetrainSettings, log_file: Path
) -> None:
    registry = Registry(Store(settings.store.url, busy_timeout_s=0.2))
    job_id = queue_job(registry)
    with Store(settings.store.url).write():  # another writer holds the database
        ProgressReporter(registry, job_id).phase("packaging")
    assert registry.get_job(job_id).progress is None
    assert "progress not recorded (OperationalError" in log_file.read_text()


def test_jobs_recorded_without_progress_still_load(settings: RetrainSettings) -> None:
    # A registry written before the field existed: its jobs have no "progress" key.
    legacy = settings.run_dir / "registry.json"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text(json.dumps({"jobs": [{"job_id": "r-0001", "state": "succeeded",
                                            "reason": "old"}]}))
    job = open_registry(Store.sqlite(settings.run_dir / "fresh.db"), legacy).get_job("r-0001")
    assert job.progress is None and job.state == "succeeded"
    again = RetrainJob.model_validate(
        {**job.model_dump(), "progress": {"phase": "training", "epoch": 1, "epochs": 2}}
    )
    assert RegistryData.model_validate({"jobs": [again.model_dump(mode="json")]}).jobs == [again]


def test_chain_callbacks_calls_every_group_in_order() -> None:
    calls: list[str] = []
    chained = chain_callbacks(
        {"on_fit_epoch_end": lambda t: calls.append("tracking")},
        None,
        {"on_fit_epoch_end": lambda t: calls.append("progress"),
         "on_train_start": lambda t: calls.append("start")},
    )
    chained["on_train_start"](None)
    chained["on_fit_epoch_end"](None)
    assert calls == ["start", "tracking", "progress"]


@pytest.fixture
def progress_training(fake_training: Callable[..., Path]) -> Path:
    """Fake training that calls its callbacks as Ultralytics' trainer does, and logs the job's
    recorded progress at each step (training runs in the spawned child: through a file)."""
    return fake_training(candidate=0.9, current=0.85, progress=True)


def _progress_calls(calls: Path) -> list[tuple[str, dict[str, Any] | None]]:
    return [(c["call"], c["progress"]) for c in read_calls(calls) if "progress" in c]


def test_a_job_records_each_phase_and_epoch(
    settings: RetrainSettings, registry: Registry, progress_training: Path, log_file: Path
) -> None:
    settings = settings.model_copy(update={"epochs": 2})
    job_id = queue_job(registry)
    job = run_job(job_id, settings, registry)

    assert job.state == "succeeded", job.reason
    steps = _progress_calls(progress_training)
    assert steps[0] == ("progress at train", {"phase": "training", "epoch": None,
                                              "epochs": None, "eta_s": None})
    epochs = [p for call, p in steps if call == "progress at epoch end"]
    assert [(p["phase"], p["epoch"], p["epochs"]) for p in epochs if p] == [
        ("training", 1, 2), ("training", 2, 2)
    ]
    assert all(p and p["eta_s"] is not None and p["eta_s"] >= 0 for p in epochs)
    assert {call: p and p["phase"] for call, p in steps}["progress at evaluate"] == "evaluating"
    # Not deployed (RETRAIN_DEPLOY=false): packaging was the last phase, and it stays recorded.
    assert job.progress is not None and job.progress.phase == "packaging"
    # One log line per phase and per epoch, in order.
    prefix = f"job {job_id}: "
    lines = [line.removeprefix(prefix) for line in log_file.read_text().splitlines()
             if line.startswith((prefix + "phase ", prefix + "training epoch "))]
    expected = [r"phase dataset", r"phase training", r"training epoch 0 of 2",
                r"training epoch 1 of 2, ETA \d+ s", r"training epoch 2 of 2, ETA 0 s",
                r"phase evaluating", r"phase packaging"]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_a_failed_swap_leaves_swapping_as_the_phase_reached(
    settings: RetrainSettings, registry: Registry, progress_training: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the swap cannot start
    settings = settings.model_copy(update={
        "deploy": True,
        "torchserve": TorchServeSettings(management_url=closed, inference_url=closed),
    })
    job = run_job(queue_job(registry), settings, registry)
    assert job.state == "failed" and "hot swap failed" in (job.reason or "")
    assert job.progress is not None and job.progress.phase == "swapping"


@pytest.mark.slow
def test_real_ultralytics_training_reports_every_epoch(
    template: Path, default_weights: Path, registry: Registry, tmp_path: Path, log_file: Path
) -> None:
    job_id = queue_job(registry)
    reporter = ProgressReporter(registry, job_id)
    training.train(
        template / "shapes" / "data.yaml", tmp_path / "train", weights=default_weights,
        epochs=2, imgsz=64, batch=4, name="candidate", callbacks=reporter.ultralytics_callbacks(),
    )
    progress = registry.get_job(job_id).progress
    assert progress is not None
    assert (progress.phase, progress.epoch, progress.epochs, progress.eta_s) == (
        "training", 2, 2, 0.0
    )
    lines = [line for line in log_file.read_text().splitlines() if line.startswith("job ")]
    assert lines[0] == f"job {job_id}: training epoch 0 of 2"
    assert lines[1].startswith(f"job {job_id}: training epoch 1 of 2, ETA ")
    assert lines[1] != f"job {job_id}: training epoch 1 of 2, ETA 0 s", "one epoch measured"
    assert lines[2] == f"job {job_id}: training epoch 2 of 2, ETA 0 s"
    assert len(lines) == 3, "one line per epoch, none for the final validation"
