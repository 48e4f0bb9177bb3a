"""A real trainer process with fake training, for the tests that signal or kill a trainer.

    python -m tests.yoloserve.retrain.trainer_child CALLS WEIGHTS TRAIN_SLEEP

Settings come from ``RETRAIN_*`` (the test passes ``settings.child_environment()``). The fakes are
conftest's: ``train`` copies real weights (packaging the candidate really works), ``evaluate``
answers fixed metrics; they run in the job's forked training child and log one JSON line each to
CALLS with that child's pid and its parent's (the trainer).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from yoloserve.retrain.__main__ import app
from yoloserve.training import train as training
from yoloserve.training.train import EvalMetrics


def main() -> None:
    calls, shipped, sleep_s = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def log(**entry: Any) -> None:
        with calls.open("a") as fh:
            fh.write(json.dumps({**entry, "pid": os.getpid(), "trainer_pid": os.getppid()},
                                default=str) + "\n")

    def fake_train(data_yaml: Path, out_dir: Path, *, weights: Path | None = None,
                   name: str = "train", **kw: Any) -> Path:
        log(call="train", job_id=Path(out_dir).parent.name)
        time.sleep(sleep_s)
        target = Path(out_dir) / name / "weights"
        target.mkdir(parents=True)
        shutil.copy(shipped, target / "best.pt")
        shutil.copy(shipped, target / "last.pt")
        return target / "best.pt"

    def fake_evaluate(weights: Path, data_yaml: Path, **kw: Any) -> EvalMetrics:
        map50 = 0.85 if Path(weights).name == "parent.pt" else 0.9
        return EvalMetrics(map50=map50, map50_95=map50 * 0.8, precision=0.9, recall=0.8,
                           images=5)

    training.train = fake_train  # type: ignore[assignment]
    training.evaluate = fake_evaluate  # type: ignore[assignment]
    sys.argv = ["yoloserve.retrain", "trainer"]
    app()


if __name__ == "__main__":
    main()
