"""A real trainer process with fake training, for the tests that signal or kill a trainer.

    python -m tests.yoloserve.retrain.trainer_child

Settings come from ``RETRAIN_*`` (the test passes ``settings.child_environment()``), the fakes
from ``fakes.ENV`` in the same environment (``fakes.FakeTraining``: ``train`` copies real weights,
so packaging the candidate really works; ``evaluate`` answers fixed metrics). This process only
puts ``fakes.train_and_evaluate`` in the place of the job's training step; the fakes run in the
job's spawned training child and log one JSON line each to the calls file, with that child's pid
and its parent's (the trainer).
"""

from __future__ import annotations

import sys

from tests.yoloserve.retrain import fakes
from yoloserve.retrain import steps
from yoloserve.retrain.__main__ import app


def main() -> None:
    fakes.FakeTraining.from_env()  # fail now, not in the first job, if the test set none
    steps.train_and_evaluate = fakes.train_and_evaluate
    sys.argv = ["yoloserve.retrain", "trainer"]
    app()


if __name__ == "__main__":
    main()
