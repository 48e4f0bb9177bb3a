"""Fixtures of the retrain tests: a packaged version 1, a tiny dataset, fake training.

Only ``training.train`` and ``training.evaluate`` are replaced (the real ones run in
tests/integration/test_retrain_job.py); registry, packaging (torch-model-archiver), the forked
training child, the job subprocess and the file lock are the real ones. The fakes run in the
forked child, so they report what they saw through files, not through memory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from yoloserve.modelserver.packaging import package, sha256_file
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.settings import RetrainSettings
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
