"""One MLflow run per training or retrain job; every call guarded, so tracking never fails a job.

An MLflow outage (refused, timed out, 5xx) is logged and counted in the status file (``status``)
and the job goes on: the run may miss what was sent meanwhile, and the model-version mirror is
repaired by the next sync (``mirror.sync``). After ``MAX_FAILURES`` failures in a row a tracker
stops calling, so a hung server costs a few timeouts, not one per epoch.

Example:
    >>> tracker = RunTracker.start(TrackingSettings(), Path(".run"), name="demo")  # doctest: +SKIP
    >>> tracker.params(epochs=1); tracker.end()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from yoloserve.tracking import status
from yoloserve.tracking.settings import TrackingSettings

logger = logging.getLogger("yoloserve.tracking")

MAX_FAILURES = 3
T = TypeVar("T")


def client(settings: TrackingSettings) -> Any:
    """An ``MlflowClient`` on ``settings.tracking_uri`` (mlflow imported here, lazily)."""
    settings.configure_client()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri)


def experiment_id(mlflow_client: Any, name: str) -> str:
    """The experiment's id, created on first use."""
    found = mlflow_client.get_experiment_by_name(name)
    return str(found.experiment_id if found else mlflow_client.create_experiment(name))


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested dict as MLflow metric names (``candidate.map50``)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}".replace("(", "").replace(")", "")
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                out[name] = float(value)
    return out


class RunTracker:
    """An MLflow run, or nothing at all when tracking is off (every method is then a no-op)."""

    def __init__(self, settings: TrackingSettings, run_dir: Path, mlflow_client: Any = None,
                 run_id: str | None = None, experiment: str | None = None) -> None:
        self.settings, self.run_dir = settings, run_dir
        self._client, self.run_id, self.experiment_id = mlflow_client, run_id, experiment
        self._failures = 0

    @property
    def active(self) -> bool:
        return self.run_id is not None and self._failures < MAX_FAILURES

    @classmethod
    def start(cls, settings: TrackingSettings, run_dir: Path, *, name: str,
              tags: Mapping[str, str] | None = None) -> RunTracker:
        """A new run in the settings' experiment; inactive if tracking is off or MLflow is down."""
        tracker = cls(settings, run_dir)
        if not settings.enabled:
            return tracker

        def create() -> None:
            tracker._client = client(settings)
            tracker.experiment_id = experiment_id(tracker._client, settings.experiment)
            run = tracker._client.create_run(tracker.experiment_id, run_name=name,
                                             tags=dict(tags or {}))
            tracker.run_id = run.info.run_id

        tracker._call("start run", create)
        return tracker

    @classmethod
    def resume(cls, settings: TrackingSettings, run_dir: Path, run_id: str | None,
               experiment: str | None = None) -> RunTracker:
        """The tracker of a run started elsewhere (the spawned training child gets only its id)."""
        if not (settings.enabled and run_id):
            return cls(settings, run_dir)
        return cls(settings, run_dir, client(settings), run_id, experiment)

    def _call(self, what: str, call: Callable[[], T]) -> T | None:
        try:
            result = call()
        except Exception as exc:  # an outage must never fail the job
            self._failures += 1
            logger.warning("MLflow %s failed (%s: %s); tracking goes on without it", what,
                           type(exc).__name__, exc)
            try:
                status.record_failure(self.run_dir, what, exc)
            except Exception:  # the status file is a courtesy too
                logger.exception("could not record the MLflow failure")
            return None
        self._failures = 0
        return result

    def params(self, **values: Any) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:6000]) for k, v in values.items() if v is not None]
        self._call("log params", lambda: self._client.log_batch(self.run_id, params=batch))

    def tags(self, **values: Any) -> None:
        if not self.active:
            return
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)[:5000]) for k, v in values.items() if v is not None]
        self._call("set tags", lambda: self._client.log_batch(self.run_id, tags=batch))

    def metrics(self, values: Mapping[str, Any], step: int = 0) -> None:
        """Log the finite numbers of ``values`` (nested dicts flattened with dots)."""
        if not self.active:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in flat(values).items()]
        self._call("log metrics", lambda: self._client.log_batch(self.run_id, metrics=batch))

    def artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """Upload a file or a folder's files (missing: skipped)."""
        path = Path(path)
        if not self.active or not path.exists():
            return
        if path.is_dir():
            call = lambda: self._client.log_artifacts(self.run_id, str(path), artifact_path)  # noqa: E731
        else:
            call = lambda: self._client.log_artifact(self.run_id, str(path), artifact_path)  # noqa: E731
        self._call(f"upload {path.name}", call)

    def end(self, state: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        self._failures = 0  # always try to close the run, even after failures
        self._call("end run", lambda: self._client.set_terminated(self.run_id, state))
