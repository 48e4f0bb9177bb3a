"""Per-epoch losses, learning rates and validation metrics from Ultralytics' trainer to a run.

Ultralytics ships its own MLflow callback (``ultralytics/utils/callbacks/mlflow.py``); we do not
use it: it starts and ends runs itself (one per ``model.train``, not one per job), raises into the
training loop when MLflow is down, and switches itself off under pytest. It is disabled in
``yoloserve.training.train`` and these callbacks log the same per-epoch figures through the job's
guarded ``RunTracker`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from yoloserve.tracking.runs import RunTracker


def epoch_callbacks(tracker: RunTracker) -> dict[str, Callable[[Any], None]]:
    """Ultralytics callbacks (event -> function) that log each epoch into ``tracker``'s run."""

    def on_fit_epoch_end(trainer: Any) -> None:
        values: dict[str, Any] = {}
        values.update(trainer.label_loss_items(trainer.tloss, prefix="train"))
        values.update(trainer.metrics or {})
        values.update({f"lr/{k.split('/')[-1]}": v for k, v in (trainer.lr or {}).items()})
        tracker.metrics({f"epoch/{k}": v for k, v in values.items()}, step=int(trainer.epoch))

    return {"on_fit_epoch_end": on_fit_epoch_end}
