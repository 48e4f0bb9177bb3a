"""Fixtures of the retrain tests: a packaged version 1, a tiny dataset, fake training.

Only ``training.train`` and ``training.evaluate`` are replaced (the real ones run in
tests/integration/test_retrain_job.py); registry, packaging (torch-model-archiver), the spawned
training child, the job subprocess and the file lock are the real ones. The fakes run in the
spawned child, so they get their settings through the environment and report what they saw
through files, not through memory (``fakes.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.yoloserve.retrain import fakes
from tests.yoloserve.retrain.fakes import FakeTraining
from yoloserve.modelserver.packaging import package
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain import steps
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import Store, open_store
from yoloserve.store.settings import StoreSettings, sqlite_url
from yoloserve.training.dataset import generate_dataset, iter_images, yolo_label_lines


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, default_weights: Path) -> Path:
    """A models folder with version 1 packaged from the shipped weights, and a tiny dataset."""
    root = tmp_path_factory.mktemp("retrain-template")
    package(default_weights, Registry(Store.sqlite(root / "models" / "yoloserve.db")),
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
        store=StoreSettings(database_url=sqlite_url(tmp_path / "models" / "yoloserve.db")),
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
    return Registry(open_store(settings.store.url))


@pytest.fixture
def fake_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, default_weights: Path
) -> Callable[..., Path]:
    """Install fakes (``fakes.FakeTraining``'s fields); returns the file where they log their
    calls (one JSON per line)."""
    calls = tmp_path / "calls.jsonl"

    def install(candidate: float = 0.9, current: float = 0.85, train_error: str | None = None,
                train_sleep: float = 0.0, progress: bool = False) -> Path:
        config = FakeTraining(str(calls), str(default_weights), candidate=candidate,
                              current=current, train_error=train_error,
                              train_sleep=train_sleep, progress=progress)
        # The environment reaches the spawned training child; the wrapper installs the fakes.
        monkeypatch.setenv(fakes.ENV, config.to_env())
        monkeypatch.setattr(steps, "train_and_evaluate", fakes.train_and_evaluate)
        return calls

    return install
