"""Pydantic models of the public contract (docs/api-contract.md).

The gateway answers with these, the web app and the scripts read them, so field names never change
here without a change to the contract. Names follow the JSON that TorchServe YOLO deployments
already return (``xyxy``, ``conf``, ``cls``, ``name``).

Response models ignore unknown fields so a newer model server or registry can add fields without
breaking an older gateway; request models forbid them, so a typo in a client is an error.

Example:
    >>> box = Box(xyxy=[1, 2, 3, 4], conf=0.9, cls=0, name="circle")
    >>> box.model_dump()
    {'xyxy': [1.0, 2.0, 3.0, 4.0], 'conf': 0.9, 'cls': 0, 'name': 'circle'}
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

XYXY = Annotated[
    list[float],
    Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in original image pixels"),
]

RetrainState = Literal["queued", "running", "succeeded", "rejected", "failed"]
JobKindName = Literal["retrain", "activate"]
RetrainPhaseName = Literal["dataset", "training", "evaluating", "packaging", "swapping"]
ReviewReason = Literal["uncertain", "rare", "novel"]
# Review ids go into URL paths and file names: a closed alphabet keeps both safe.
REVIEW_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def _is_none(value: object) -> bool:
    return value is None


class _Response(BaseModel):
    # A registry or handler may write a version as the number 3: the contract says "3".
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- prediction -------------------------------------------------------------------------------


class Box(_Response):
    """One detection."""

    xyxy: XYXY
    conf: float = Field(ge=0.0, le=1.0, description="Confidence")
    cls: int = Field(ge=0, description="Class index")
    name: str = Field(description="Class name")
    embedding: list[float] | None = Field(
        default=None,
        exclude_if=_is_none,
        description="Per-box embedding, present only when asked for with ?embeddings=true",
    )


class ModelRef(_Response):
    """Which model answered."""

    name: str
    version: str


class ImageSize(_Response):
    """Size of the uploaded image, in pixels."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Timing(_Response):
    """Where the time went, in milliseconds."""

    total: float = Field(description="Whole request as the gateway saw it")
    model: float = Field(description="Round trip to the model server")
    embeddings: float | None = Field(
        default=None, exclude_if=_is_none, description="Embedding computation, when asked for"
    )


class PredictResponse(_Response):
    """Answer of ``POST /predict``. Boxes are sorted by ``conf``, highest first."""

    request_id: str
    model: ModelRef
    image: ImageSize
    boxes: list[Box]
    timing_ms: Timing


# --- errors -----------------------------------------------------------------------------------


class ErrorBody(_Response):
    """What went wrong."""

    code: str = Field(description="Stable snake_case error code", examples=["invalid_image"])
    message: str = Field(description="Explanation for a human")
    request_id: str


class ErrorResponse(_Response):
    """Every non-2xx answer of the gateway."""

    error: ErrorBody


# --- models and health ------------------------------------------------------------------------


class TrainedOn(_Response):
    """How many images a version was trained on (other keys of the registry pass through)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    ref_images: int = Field(default=0, ge=0)
    feedback_images: int = Field(default=0, ge=0)


class ModelVersionInfo(_Response):
    """One registered model version."""

    version: str
    status: str = Field(description="serving (the default), ready, rejected or retired")
    created_at: datetime | None = None
    parent: str | None = None
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"map50": 0.94, "map50_95": 0.77, "eval_set": {
            "name": "r-0003 held-out", "images": 60, "manifest_sha256": "51ab..."}}],
        description="Headline metrics on ``eval_set`` (the set these numbers come from)",
    )
    trained_on: TrainedOn = Field(default_factory=TrainedOn)
    benchmark: dict[str, Any] = Field(
        default_factory=dict,
        description="Scores on the fixed benchmark set, the same images for every version",
        examples=[{"set": {"name": "shapes-test", "images": 150, "manifest_sha256": "9f2c..."},
                   "map50": 0.977, "map50_95": 0.849}],
    )
    mlflow_run_id: str | None = Field(default=None, description="MLflow run that produced it")
    mlflow_run_url: str | None = Field(
        default=None, description="That run in the MLflow UI (GATEWAY_MLFLOW_UI_URL set)"
    )
    runtime: Literal["onnx", "openvino", "torchscript", "torch", "onnx-int8", "openvino-int8"] = (
        Field(default="torch", description="What serves it: ONNX Runtime, OpenVINO, TorchScript, "
              "the .pt, or an INT8 quantization for ONNX Runtime or OpenVINO")
    )
    parity: dict[str, Any] = Field(
        default_factory=dict,
        description="The export's parity with the .pt on fixed real images, measured at package "
        "time; {} for INT8 runtimes and for the torch runtime of earlier releases",
        examples=[{"passed": True, "images": 7, "boxes": 66, "max_box_px": 0.005,
                   "max_conf": 5e-05, "limits": {"px": 0.5, "conf": 0.001}}],
    )
    accuracy: dict[str, Any] = Field(
        default_factory=dict,
        description="mAP50 and mAP50-95 of what serves (candidate) and of the .pt (reference) on "
        "the fixed benchmark set, measured at package time: the gate of the INT8 runtimes "
        "(within tolerance of the .pt); {} when packaged without the set",
        examples=[{"passed": True, "images": 150, "boxes": 580,
                   "reference": {"map50": 0.9725, "map50_95": 0.8488},
                   "candidate": {"map50": 0.9725, "map50_95": 0.8421},
                   "deltas": {"map50": 0.0, "map50_95": -0.0067}, "tolerance": 0.01,
                   "conf_threshold": 0.001,
                   "set": {"name": "shapes-test", "images": 150, "manifest_sha256": "9f2c..."}}],
    )
    selection: dict[str, Any] = Field(
        default_factory=dict,
        description="How RUNTIME=auto chose the runtime at package time: each runtime that "
        "passed its gate timed on the packaging machine (median ms of one request), those "
        "refused and why, and that machine's CPU; {} when a runtime was named",
        examples=[{"chosen": "openvino-int8",
                   "p50_ms": {"onnx": 16.1, "openvino": 14.2, "openvino-int8": 7.0},
                   "refused": {}, "rounds": 20,
                   "machine": {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "avx512f"],
                               "cpu_count": 2}}],
    )
    classes: list[str] = Field(
        default_factory=list,
        description="The class names it detects; a version whose classes are not the "
        "platform's (they changed with --replace-classes) cannot serve again; [] in records "
        "older than that",
    )


class ModelsResponse(_Response):
    """Answer of ``GET /models``."""

    name: str
    default_version: str | None
    classes: list[str]
    versions: list[ModelVersionInfo]


class HealthResponse(_Response):
    """Answer of ``GET /health``."""

    status: Literal["ok"] = "ok"


class ReadyResponse(_Response):
    """Answer of ``GET /ready`` when the gateway can serve predictions."""

    status: Literal["ready"] = "ready"
    model: ModelRef
    live_workers: int | None = Field(
        default=None, ge=1, description="None when the model server's workers cannot be seen "
        "(GATEWAY_READINESS=ping, e.g. on KServe)"
    )


# --- feedback and retraining ------------------------------------------------------------------


class LabelBox(_Request):
    """One ground-truth box as the user corrected it."""

    xyxy: XYXY
    name: str = Field(min_length=1, description="A class name from GET /models")

    @model_validator(mode="after")
    def _ordered_corners(self) -> LabelBox:
        x1, y1, x2, y2 = self.xyxy
        if x2 <= x1 or y2 <= y1:
            raise ValueError("xyxy must satisfy x1 < x2 and y1 < y2")
        return self


class FeedbackLabels(_Request):
    """The ``labels`` form field of ``POST /feedback`` (a JSON string)."""

    request_id: str | None = Field(default=None, description="Links to the prediction")
    boxes: list[LabelBox] = Field(description="Ground truth; empty means nothing to detect")
    review_id: str | None = Field(
        default=None,
        pattern=REVIEW_ID_PATTERN,
        description="The review-queue item (GET /review) these labels answer; closes it",
    )


class RetrainInfo(_Response):
    """Whether a piece of feedback started a retrain."""

    triggered: bool
    job_id: str | None = None
    next_at_rows: int | None = Field(default=None, description="Row count of the next trigger")


class FeedbackResponse(_Response):
    """Answer of ``POST /feedback`` (201)."""

    feedback_id: str
    rows_written: int = Field(ge=0)
    prod_rows_total: int = Field(ge=0)
    retrain: RetrainInfo


class RetrainMetrics(_Response):
    """Candidate against current model, on the same evaluation set."""

    candidate: dict[str, Any] | None = None
    current: dict[str, Any] | None = None


class RetrainProgressStatus(_Response):
    """Where a job is: its phase, and while training, epoch i of N with an ETA."""

    phase: RetrainPhaseName
    epoch: int | None = Field(default=None, description="Epochs finished (training phase)")
    epochs: int | None = Field(default=None, description="Epochs in all (training phase)")
    eta_s: float | None = Field(
        default=None, description="Seconds training still needs (mean measured epoch x epochs left)"
    )
    updated_at: datetime | None = None


class RetrainJobStatus(_Response):
    """A job: answer of ``POST /retrain``, ``GET /retrain/{job_id}``,
    ``POST /models/{version}/activate`` and ``GET /jobs/{job_id}``."""

    job_id: str
    kind: JobKindName = Field(
        default="retrain", description="retrain, or activate (serve a registered version)"
    )
    version: str | None = Field(default=None, description="activate: the version to serve")
    state: RetrainState
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    candidate_version: str | None = None
    metrics: RetrainMetrics = Field(default_factory=RetrainMetrics)
    reason: str | None = None
    progress: RetrainProgressStatus | None = Field(
        default=None,
        description="Phase reached (dataset, training, evaluating, packaging, swapping); "
        "null until the job runs; kept after it ends",
    )


# --- review queue -----------------------------------------------------------------------------


class ReviewItem(_Response):
    """One prediction the gateway sampled for a human to label (``GET /review``)."""

    review_id: str
    reason: ReviewReason = Field(
        description="uncertain: a box's confidence near the threshold; rare: a class scarce in "
        "the reference data; novel: a box's embedding far from the reference set"
    )
    created_at: datetime
    model_version: str
    image_url: str = Field(description="Gateway path answering the stored image")
    image: ImageSize
    boxes: list[Box] = Field(description="What the model predicted, as /predict answered it")
    request_id: str | None = Field(default=None, description="The sampled prediction's id")
    priority: float = Field(
        ge=0.0, le=1.0, description="How strongly the strategy picked it; highest listed first"
    )


class ReviewList(_Response):
    """Answer of ``GET /review``: open items, highest priority first (oldest first on ties)."""

    items: list[ReviewItem]
    total: int = Field(ge=0, description="Open items in the queue (items holds up to limit)")
