"""Settings of the reporting service, read from ``REPORTING_*`` environment variables.

Every default is derived from :mod:`yoloserve.paths`, so a clone runs anywhere and tests point the
service at temporary folders by passing another :class:`Settings` (or setting the variables).

Example:
    >>> from reporting.config import Settings
    >>> Settings(ui_port=9000).ui_url
    'http://127.0.0.1:9000'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths
from yoloserve.drift_summary import FILE_NAME as DRIFT_SUMMARY_FILE

DEFAULT_WORKSPACE = paths.ROOT / "reporting" / "workspace"


class Settings(BaseSettings):
    """Where the Evidently workspace and the CSVs live, and how runs are computed."""

    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore")

    workspace: Path = Field(DEFAULT_WORKSPACE, description="Evidently local workspace folder.")
    project_name: str = Field("YOLO detection monitoring", description="Evidently project name.")
    ref_csv: Path = Field(paths.DATA_DIR / "ref_data.csv", description="Reference embeddings.")
    prod_csv: Path = Field(paths.DATA_DIR / "prod_data.csv", description="Production rows.")
    # None means "<workspace>/html": the UI and the SDK skip folders whose name is not a UUID,
    # so the HTML files can live beside the projects and go wherever the workspace goes.
    reports_dir: Path | None = Field(None, description="Folder for the timestamped HTML reports.")
    # None means "beside prod_csv": the data folder the gateway shares, which exports it to
    # Prometheus (yoloserve.drift_summary says why a file and not the workspace).
    summary_path: Path | None = Field(
        None, description="JSON summary of the latest drift report, for the gateway's /metrics."
    )

    # Each HTML file embeds Evidently's JavaScript bundle (4-5 MB), and `watch` may add a run every
    # few minutes: keep the newest ones only.
    html_keep: int = Field(
        100, ge=0, description="HTML reports kept per kind, newest first (0 = keep all)."
    )

    ui_host: str = Field("127.0.0.1", description="Host `evidently ui` binds to.")
    ui_port: int = Field(8082, ge=1, le=65535, description="Port of `evidently ui`.")

    interval_s: float = Field(300.0, gt=0, description="`watch`: add a run at least this often.")
    every_rows: int = Field(50, ge=1, description="`watch`: add a run each k new prod rows.")
    poll_s: float = Field(2.0, gt=0, description="`watch`: how often the prod CSV is counted.")
    window_rows: int = Field(
        500, ge=0, description="Latest prod rows one run looks at (0 = all rows)."
    )
    min_rows: int = Field(
        5, ge=3, description="Fewest prod rows for a drift report (fewer are noise, not drift)."
    )

    # KS (p-value <= threshold) keeps its false-alarm rate at every sample size. Measured on
    # undrifted N(0,1) columns vs a 2,000-row reference: KS flags 6% of them for a 50-row run
    # and for a 500-row run, while Evidently's other default, normed Wasserstein >= 0.1, flags
    # 96% at 50 rows, 34% at 200 and 12% at 500 (sampling noise ~ 1.3/sqrt(n)). Runs here see
    # 50-500 rows. With window_rows=0 and many thousands of rows, KS starts to flag shifts too
    # small to matter: set REPORTING_DRIFT_METHOD=wasserstein (threshold 0.1) there.
    drift_method: str = Field("ks", description="Evidently stattest per embedding column.")
    drift_threshold: float = Field(0.05, gt=0, description="Stattest threshold for one column.")
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Share of drifted columns that counts as dataset drift."
    )
    # Measured with the shipped embedder (24 dims) against data/ref_data.csv, prod rows from
    # seeded JPEG images: undrifted synthetic shapes give 1.1 / 0.8 / 0.6 for 44 / 138 / 364
    # rows (sampling noise, ~1/sqrt(rows)); the scenario's shift (shapes on photos) gives 3.8-4.5
    # at every size. Evidently's 0.2 would call every run drifted.
    embedding_distance_threshold: float = Field(
        2.0, gt=0, description="Euclidean distance of mean embeddings that counts as drift."
    )
    embedding_projection: Literal["pca", "tsne"] = Field(
        "pca", description="2-D view in the EmbeddingsDrift widget (t-SNE costs 10-60 s)."
    )

    @model_validator(mode="after")
    def _default_reports_dir(self) -> Settings:
        if self.reports_dir is None:
            self.reports_dir = self.workspace / "html"
        if self.summary_path is None:
            self.summary_path = self.prod_csv.parent / DRIFT_SUMMARY_FILE
        return self

    @property
    def html_dir(self) -> Path:
        """Folder of the HTML reports (``reports_dir`` once defaults are applied)."""
        assert self.reports_dir is not None  # set by the validator
        return self.reports_dir

    @property
    def drift_summary_path(self) -> Path:
        """Where each run's drift summary goes (``summary_path`` once defaults are applied)."""
        assert self.summary_path is not None  # set by the validator
        return self.summary_path

    @property
    def ui_url(self) -> str:
        """Base URL of the Evidently UI."""
        return f"http://{self.ui_host}:{self.ui_port}"


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, built once per process."""
    return Settings()
