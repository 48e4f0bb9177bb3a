"""Gateway settings: one class, read from ``GATEWAY_*`` environment variables.

Nothing reads the environment at import time: ``get_settings()`` builds the settings on first
call and caches them, and ``create_app(settings)`` takes any other instance (tests do that).
The variables are summarised in README.md (Configuration); TorchServe's own (``TORCHSERVE_*``)
and the store's (``STORE_*``) are nested settings shared with the other services.

Example:
    >>> Settings(port=9000, api_keys="k1, k2").api_keys
    ['k1', 'k2']
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.labelstudio.settings import LabelStudioSettings
from yoloserve import paths
from yoloserve.drift_summary import FILE_NAME as DRIFT_SUMMARY_FILE
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.store.settings import StoreSettings

# Comma-separated in the environment ("a,b"), a list in code.
StrList = Annotated[list[str], NoDecode]
REVIEW_STRATEGIES = ("uncertain", "rare", "novel")


class Settings(BaseSettings):
    """Everything the gateway can be told. Environment variables are ``GATEWAY_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 in a container)")
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    torchserve: TorchServeSettings = Field(
        default_factory=TorchServeSettings,
        description="Where TorchServe is (TORCHSERVE_INFERENCE_URL, TORCHSERVE_MANAGEMENT_URL, "
        "TORCHSERVE_MODEL_NAME)",
    )
    readiness: Literal["management", "ping"] = Field(
        default="management",
        description=(
            "How /ready judges the model server: 'management' = the default model has a READY "
            "worker (TorchServe's management API); 'ping' = TorchServe's /ping answers Healthy "
            "(it reports Healthy only once every model has its minimum workers), for KServe, "
            "where the management API stays inside the predictor pod"
        ),
    )

    connect_timeout_s: float = Field(default=2.0, gt=0, description="Connecting to TorchServe")
    predict_timeout_s: float = Field(default=30.0, gt=0, description="Whole TorchServe call")
    ready_timeout_s: float = Field(default=2.0, gt=0, description="Each /ready probe call")
    max_connections: int = Field(default=64, ge=1, description="Pool size towards TorchServe")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After on 503 answers")
    predict_retry_delay_s: float = Field(
        default=0.15,
        ge=0,
        le=5,
        description=(
            "Pause before the one retry of an unpinned prediction that met an unavailable model "
            "server (covers the instant of a hot swap)"
        ),
    )

    max_upload_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest accepted image file, in bytes"
    )
    multipart_overhead_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Allowance for the multipart envelope and text fields on top of the image",
    )
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="Largest width x height (decompression bombs)"
    )

    api_keys: StrList = Field(default_factory=list, description="Keys for write routes")
    admin_api_keys: StrList = Field(default_factory=list, description="Keys for admin routes")
    cors_origins: StrList = Field(default_factory=list, description="Allowed browser origins")

    store: StoreSettings = Field(
        default_factory=StoreSettings,
        description="The store of versions, jobs and feedback (STORE_DATABASE_URL)",
    )
    labelstudio: LabelStudioSettings = Field(
        default_factory=LabelStudioSettings,
        description="Label Studio, for the ML backend's task images (LABELSTUDIO_URL, "
        "LABELSTUDIO_API_KEY, LABELSTUDIO_IMAGE_ORIGINS); docs/labelstudio.md",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        description="MLflow UI (http://127.0.0.1:8083): GET /models links each version's run",
    )
    mlflow_status_dir: Path = Field(
        default=paths.RUN_DIR,
        description="Run dir whose tracking/status.json (the MLflow mirror's outages) /metrics "
        "exports",
    )
    data_dir: Path = Field(
        default=paths.DATA_DIR,
        description="Feedback goes to <data_dir>/prod_data.csv and <data_dir>/feedback/",
    )
    drift_summary_path: Path | None = Field(
        default=None,
        description=(
            "The reporting watcher's latest drift summary, exported on /metrics; "
            "None = <data_dir>/drift_summary.json, where the watcher writes it by default"
        ),
    )
    embedder_path: Path | None = Field(
        default=None, description="Embedder artifact; None = yoloserve.embeddings.embedder' default"
    )
    embedder_retry_s: float = Field(
        default=30.0, ge=0, description="Wait before retrying a failed embedder load"
    )
    prediction_cache_entries: int = Field(
        default=2048,
        ge=0,
        description=(
            "Recent /predict answers kept for the feedback on the same image (no second "
            "inference); 0 = off"
        ),
    )
    prediction_cache_ttl_s: float = Field(
        default=900.0,
        ge=0,
        description="How long a cached prediction may stand in for a fresh one in /feedback",
    )

    # The review queue (gateway/review/): which live predictions are worth a human's label.
    review_strategies: StrList = Field(
        default_factory=lambda: ["uncertain", "rare", "novel"],
        description="Sampling strategies, comma-separated: uncertain, rare, novel; empty = off",
    )
    review_conf_threshold: float = Field(
        default=0.25, ge=0, le=1, description="uncertain: the confidence the band is centred on"
    )
    review_conf_band: float = Field(
        default=0.15, gt=0, le=1, description="uncertain: half-width of the band around it"
    )
    review_rare_share: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="rare: a class below this share of the reference boxes is rare",
    )
    review_novel_quantile: float = Field(
        default=0.95,
        gt=0,
        lt=1,
        description="novel: a box is novel when its distance to the nearest reference embedding "
        "is beyond this quantile of the reference set's own nearest-neighbour distances",
    )
    review_ref_sample: int = Field(
        default=512, ge=8, le=20_000, description="novel: reference embeddings kept (subsample)"
    )
    review_max_per_minute: int = Field(
        default=10, ge=1, description="At most this many items enter the queue per minute"
    )
    review_max_items: int = Field(
        default=500, ge=1, description="Open items kept; the lowest priority (then oldest) go"
    )
    ref_data_path: Path | None = Field(
        default=None, description="Reference rows (rare, novel); None = <data_dir>/ref_data.csv"
    )

    @field_validator(
        "api_keys", "admin_api_keys", "cors_origins", "review_strategies", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("review_strategies")
    @classmethod
    def _known_strategies(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(REVIEW_STRATEGIES))
        if unknown:
            raise ValueError(f"unknown review strategies {unknown}; known: {REVIEW_STRATEGIES}")
        return value

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted before the body is read."""
        return self.max_upload_bytes + self.multipart_overhead_bytes

    @property
    def drift_summary_file(self) -> Path:
        """Where the latest drift summary is read from."""
        return self.drift_summary_path or self.data_dir / DRIFT_SUMMARY_FILE

    @property
    def review_folder(self) -> Path:
        """Where the review queue keeps its items' images (``images/``; the items are rows of
        the store), and where an older release's ``review.db`` is imported from."""
        return self.data_dir / "review"

    @property
    def ref_data_file(self) -> Path:
        """The reference rows the rare and novel strategies compare with."""
        return self.ref_data_path or self.data_dir / "ref_data.csv"

    @property
    def auth_enabled(self) -> bool:
        """Whether write routes require a key."""
        return bool(self.api_keys or self.admin_api_keys)


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
