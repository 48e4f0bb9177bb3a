"""Where runs and model versions are tracked: ``MLFLOW_TRACKING_URI`` decides, unset means off."""

from __future__ import annotations

import os

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve.modelserver import MODEL_NAME


class TrackingSettings(BaseSettings):
    """MLflow tracking. ``MLFLOW_TRACKING_URI`` (MLflow's own variable) turns it on; the rest are
    ``TRACKING_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "TRACKING_URI"),
        description="MLflow server (http://127.0.0.1:8083); unset or empty: no tracking",
    )
    experiment: str = Field(default="yoloserve", description="Experiment of every run")
    registered_model: str = Field(default=MODEL_NAME, description="MLflow registered model")
    champion_alias: str = Field(default="champion", description="Alias of the serving default")
    http_timeout_s: float = Field(default=10.0, gt=0, description="Per MLflow HTTP request")
    http_retries: int = Field(
        default=0, ge=0, description="MLflow's own retries (0: an outage costs one timeout)"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.tracking_uri and self.tracking_uri.strip())

    def configure_client(self) -> None:
        """Bound MLflow's HTTP waits before mlflow is imported: by default it retries for minutes,
        and a retrain job or a rollback must not wait that long on a mirror."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(self.http_timeout_s)))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def run_url(ui_url: str | None, experiment_id: str | None, run_id: str | None) -> str | None:
    """The MLflow UI page of a run, or ``None`` when something is missing.

    Example:
        >>> run_url("http://127.0.0.1:8083", "1", "abc")
        'http://127.0.0.1:8083/#/experiments/1/runs/abc'
    """
    if not (ui_url and experiment_id and run_id):
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
