"""A real controller process with fake training, for the tests that run or kill controllers.

    python -m tests.yoloserve.controller.controller_child [FAKES_JSON_FILE]

Like ``tests.yoloserve.retrain.trainer_child``: settings from the environment (``STORE_*``,
``RETRAIN_*``, ``CONTROLLER_*``), the fakes from ``fakes.ENV`` (``fakes.FakeTraining``) or from
the file given (supervisord's environment cannot carry JSON: the child puts the file's text in
``fakes.ENV``, which the job's spawned training child inherits); only the job's training step is
replaced, everything else is the real controller.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.yoloserve.retrain import fakes
from yoloserve.controller.__main__ import app
from yoloserve.retrain import steps


def main() -> None:
    if len(sys.argv) > 1:
        os.environ[fakes.ENV] = Path(sys.argv[1]).read_text()
    fakes.FakeTraining.from_env()  # fail now, not in the first job, if the test set none
    steps.train_and_evaluate = fakes.train_and_evaluate
    sys.argv = ["yoloserve.controller", "run"]
    app()


if __name__ == "__main__":
    main()
