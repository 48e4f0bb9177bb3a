"""A real controller process with fake training, for the tests that run or kill controllers.

    python -m tests.yoloserve.controller.controller_child

Like ``tests.yoloserve.retrain.trainer_child``: settings from the environment (``STORE_*``,
``RETRAIN_*``, ``CONTROLLER_*``), the fakes from ``fakes.ENV`` (``fakes.FakeTraining``); only the
job's training step is replaced, everything else is the real controller.
"""

from __future__ import annotations

import sys

from tests.yoloserve.retrain import fakes
from yoloserve.controller.__main__ import app
from yoloserve.retrain import steps


def main() -> None:
    fakes.FakeTraining.from_env()  # fail now, not in the first job, if the test set none
    steps.train_and_evaluate = fakes.train_and_evaluate
    sys.argv = ["yoloserve.controller", "run"]
    app()


if __name__ == "__main__":
    main()
