"""Fake training for the retrain tests, able to reach the job's spawned training child.

The job runs ``steps.train_and_evaluate`` in a spawned child (``run_with_deadline``): a fresh
interpreter that sees the parent's environment and files, never its monkeypatches. So a test
(conftest's ``fake_training``, or ``trainer_child`` in a trainer process) replaces
``steps.train_and_evaluate`` with :func:`train_and_evaluate` below (``job.py`` looks it up when it
calls it, and pickle finds it here by name), and sets :data:`ENV` to a :class:`FakeTraining`'s
JSON. In the child, :func:`train_and_evaluate` installs the fakes for ``training.train`` and
``training.evaluate`` that the config describes, then runs the real step: everything but
Ultralytics is the real code. The fakes report what they saw through the ``calls`` file, one JSON
line per call.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from yoloserve.modelserver.packaging import sha256_file
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain import steps
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.training import train as training
from yoloserve.training.train import EvalMetrics

ENV = "YOLOSERVE_TEST_FAKE_TRAINING"

# Taken at import, before any test replaces it: the wrapper below runs the real step.
_real_train_and_evaluate = steps.train_and_evaluate


@dataclass(frozen=True)
class FakeTraining:
    """What the fakes do.

    Attributes:
        calls: the file each fake call appends one JSON line to.
        weights: real weights the fake training copies as its result (packaging really works).
        candidate: the candidate's mAP50 (``evaluate`` of any weights but ``parent.pt``).
        current: the serving version's mAP50 (``evaluate`` of ``parent.pt``).
        train_error: training raises ``RuntimeError(train_error)`` when set.
        train_sleep: seconds training takes.
        hold: training waits while this file exists (a hung training child, until the job's
            deadline kills it).
        progress: training calls its callbacks as Ultralytics' trainer does (one epoch after
            the other), and each call logs the job's recorded progress as it is then.
    """

    calls: str
    weights: str
    candidate: float = 0.9
    current: float = 0.85
    train_error: str | None = None
    train_sleep: float = 0.0
    hold: str | None = None
    progress: bool = False

    def to_env(self) -> str:
        """The value of :data:`ENV` that describes these fakes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> FakeTraining:
        """The fakes :data:`ENV` describes.

        Raises:
            KeyError: :data:`ENV` is not set (the test set up no fake training).
        """
        return cls(**json.loads(os.environ[ENV]))


def _metrics(map50: float) -> EvalMetrics:
    return EvalMetrics(map50=map50, map50_95=map50 * 0.8, precision=0.9, recall=0.8, images=5)


class _Fakes:
    """``training.train`` and ``training.evaluate`` as ``config`` says, for one job's child."""

    def __init__(self, config: FakeTraining, store_url: str) -> None:
        self.config = config
        self.store_url = store_url

    def log(self, **entry: Any) -> None:
        # pid: the training child's; trainer_pid: the process that ran the job (its parent).
        entry = {**entry, "pid": os.getpid(), "trainer_pid": os.getppid()}
        with Path(self.config.calls).open("a") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")

    def recorded(self) -> dict[str, Any] | None:
        progress = Registry(open_store(self.store_url)).load().jobs[-1].progress
        return None if progress is None else progress.model_dump(exclude={"updated_at"})

    def train(self, data_yaml: Path, out_dir: Path, *, weights: Path | None = None,
              name: str = "train", callbacks: dict[str, Any] | None = None, **kw: Any) -> Path:
        config = self.config
        if config.progress:
            self._epochs(kw["epochs"], callbacks)
        self.log(call="train", job_id=Path(out_dir).parent.name, data_yaml=data_yaml,
                 weights=weights, sha256=sha256_file(weights) if weights else None, **kw)
        if config.train_sleep:
            time.sleep(config.train_sleep)
        while config.hold and Path(config.hold).exists():
            time.sleep(0.2)
        if config.train_error:
            raise RuntimeError(config.train_error)
        target = Path(out_dir) / name / "weights"
        target.mkdir(parents=True)
        shutil.copy(config.weights, target / "best.pt")
        shutil.copy(config.weights, target / "last.pt")
        return target / "best.pt"

    def _epochs(self, epochs: int, callbacks: dict[str, Any] | None) -> None:
        self.log(call="progress at train", progress=self.recorded())
        assert callbacks is not None, "the job passes its progress callbacks to training"
        trainer = SimpleNamespace(epoch=0, epochs=epochs)
        callbacks["on_train_start"](trainer)
        for epoch in range(epochs):
            trainer.epoch = epoch
            callbacks["on_fit_epoch_end"](trainer)
            self.log(call="progress at epoch end", progress=self.recorded())

    def evaluate(self, weights: Path, data_yaml: Path, **kw: Any) -> EvalMetrics:
        if self.config.progress:
            self.log(call="progress at evaluate", progress=self.recorded())
        self.log(call="evaluate", weights=weights, data_yaml=data_yaml, **kw)
        parent = Path(weights).name == "parent.pt"
        return _metrics(self.config.current if parent else self.config.candidate)


def train_and_evaluate(
    data_yaml: Path, parent_weights: Path, out_dir: Path, settings: RetrainSettings,
    tracking: Mapping[str, Any] | None = None, job_id: str | None = None,
) -> dict[str, Any]:
    """``steps.train_and_evaluate`` with the fakes :data:`ENV` describes (``training.train`` and
    ``training.evaluate`` replaced in this process: the job's throw-away training child)."""
    fakes = _Fakes(FakeTraining.from_env(), settings.store.url)
    training.train = fakes.train  # type: ignore[assignment]
    training.evaluate = fakes.evaluate  # type: ignore[assignment]
    return _real_train_and_evaluate(data_yaml, parent_weights, out_dir, settings, tracking,
                                    job_id)
