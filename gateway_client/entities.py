"""The data the gateway's answers carry, as frozen dataclasses parsed from the contract's JSON.

Each class reads its part of ``docs/api-contract.md`` with ``from_json`` (a ``KeyError``,
``TypeError`` or ``ValueError`` there means the body is not the contract's shape; the client
turns that into a ``GatewayError`` with code ``invalid_response``). :class:`LabelBox` goes the
other way: it is the ground truth a feedback sends.

Example:
    >>> box = Box.from_json({"xyxy": [1, 2, 30, 40], "conf": 0.9, "cls": 2, "name": "triangle"})
    >>> box.xyxy, box.cls
    ((1.0, 2.0, 30.0, 40.0), 2)
    >>> LabelBox((1.0, 2.0, 3.333, 4.0), "square").to_json()
    {'xyxy': [1.0, 2.0, 3.33, 4.0], 'name': 'square'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: States after which a retrain job changes no more (``GET /retrain/{job_id}``'s ``state``).
FINAL_STATES = ("succeeded", "rejected", "failed")


@dataclass(frozen=True)
class Box:
    """One detection, in the original image's pixel coordinates."""

    xyxy: tuple[float, float, float, float]
    conf: float
    cls: int
    name: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Box:
        """Parse a box of the ``/predict`` answer."""
        x1, y1, x2, y2 = (float(v) for v in data["xyxy"])
        return cls((x1, y1, x2, y2), float(data["conf"]), int(data["cls"]), str(data["name"]))


@dataclass(frozen=True)
class LabelBox:
    """One ground-truth box sent as feedback: where the object is and what it is."""

    xyxy: tuple[float, float, float, float]
    name: str

    def to_json(self) -> dict[str, Any]:
        """The contract's ``{"xyxy": [...], "name": ...}`` form."""
        return {"xyxy": [round(v, 2) for v in self.xyxy], "name": self.name}


@dataclass(frozen=True)
class Prediction:
    """The ``/predict`` answer plus the round trip the client measured."""

    request_id: str | None
    model_name: str
    model_version: str
    width: int
    height: int
    boxes: list[Box]
    timing_ms: dict[str, float]
    round_trip_ms: float

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, round_trip_ms: float, version_header: str | None = None
    ) -> Prediction:
        """Parse the ``/predict`` body; the ``X-Model-Version`` header backs up the body."""
        model = data.get("model") or {}
        return cls(
            request_id=data.get("request_id"),
            model_name=str(model.get("name", "")),
            model_version=str(model.get("version") or version_header or "?"),
            width=int(data["image"]["width"]),
            height=int(data["image"]["height"]),
            boxes=[Box.from_json(b) for b in data["boxes"]],
            timing_ms={str(k): float(v) for k, v in (data.get("timing_ms") or {}).items()},
            round_trip_ms=round_trip_ms,
        )


@dataclass(frozen=True)
class FeedbackResult:
    """The ``/feedback`` answer."""

    feedback_id: str | None
    rows_written: int
    prod_rows_total: int
    retrain_triggered: bool
    job_id: str | None
    next_at_rows: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackResult:
        """Parse the ``201`` body of ``POST /feedback``."""
        retrain = data.get("retrain") or {}
        next_at = retrain.get("next_at_rows")
        return cls(
            feedback_id=data.get("feedback_id"),
            rows_written=int(data["rows_written"]),
            prod_rows_total=int(data["prod_rows_total"]),
            retrain_triggered=bool(retrain.get("triggered", False)),
            job_id=retrain.get("job_id"),
            next_at_rows=int(next_at) if next_at is not None else None,
        )


@dataclass(frozen=True)
class ModelVersion:
    """One entry of ``GET /models``'s ``versions``."""

    version: str
    status: str | None
    created_at: str | None
    parent: str | None
    metrics: dict[str, float]
    trained_on: dict[str, Any]
    eval_set: dict[str, Any] | None = None
    benchmark: dict[str, Any] = field(default_factory=dict)
    mlflow_run_url: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Parse one version entry; everything but ``version`` may be missing.

        ``metrics`` keeps the numbers; the set they come from is ``eval_set``
        (``{"name", "images", "manifest_sha256"}``), and ``benchmark`` holds the scores on the
        fixed benchmark set with its own ``set``.
        """
        parent = data.get("parent")
        raw = data.get("metrics") or {}
        eval_set = raw.get("eval_set")
        return cls(
            version=str(data["version"]),
            status=data.get("status"),
            created_at=data.get("created_at"),
            parent=str(parent) if parent is not None else None,
            metrics={
                str(k): float(v) for k, v in raw.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            },
            trained_on=dict(data.get("trained_on") or {}),
            eval_set=dict(eval_set) if isinstance(eval_set, Mapping) else None,
            benchmark=dict(data.get("benchmark") or {}),
            mlflow_run_url=data.get("mlflow_run_url"),
        )


@dataclass(frozen=True)
class ModelsInfo:
    """The ``GET /models`` answer."""

    name: str
    default_version: str | None
    classes: list[str]
    versions: list[ModelVersion]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelsInfo:
        """Parse the ``GET /models`` body."""
        default = data.get("default_version")
        return cls(
            name=str(data.get("name", "")),
            default_version=str(default) if default is not None else None,
            classes=[str(c) for c in data["classes"]],
            versions=[ModelVersion.from_json(v) for v in data["versions"]],
        )


#: Phases of a running job, in order, each with the share of the whole job it roughly spans
#: (training dominates: a measured 8-epoch job spent ~90 % of its minutes there).
PHASE_SPANS: dict[str, tuple[float, float]] = {
    "dataset": (0.0, 0.05),
    "training": (0.05, 0.85),
    "evaluating": (0.85, 0.93),
    "packaging": (0.93, 0.97),
    "swapping": (0.97, 1.0),
}


@dataclass(frozen=True)
class RetrainProgress:
    """Where a running job is (``GET /retrain/{job_id}``'s ``progress``).

    Example:
        >>> p = RetrainProgress.from_json({"phase": "training", "epoch": 3, "epochs": 8,
        ...                                "eta_s": 95})
        >>> p.label, round(p.fraction, 2)
        ('training: epoch 3 of 8, about 1 min 35 s left', 0.35)
    """

    phase: str
    epoch: int | None = None
    epochs: int | None = None
    eta_s: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrainProgress:
        """Parse the ``progress`` object; only ``phase`` is required."""
        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        epoch, epochs = number("epoch"), number("epochs")
        return cls(
            phase=str(data["phase"]),
            epoch=None if epoch is None else int(epoch),
            epochs=None if epochs is None else int(epochs),
            eta_s=number("eta_s"),
        )

    @property
    def fraction(self) -> float:
        """Share of the whole job done, 0..1, for one progress bar across every phase."""
        start, end = PHASE_SPANS.get(self.phase, (0.0, 0.0))
        within = 0.0
        if self.phase == "training" and self.epoch is not None and self.epochs:
            within = min(1.0, self.epoch / self.epochs)
        return start + (end - start) * within

    @property
    def label(self) -> str:
        """One human line: the phase, the epoch and the time left when training."""
        if self.phase != "training" or not self.epochs:
            return self.phase
        text = f"training: epoch {self.epoch or 0} of {self.epochs}"
        if self.eta_s is not None:
            text += f", about {format_seconds(self.eta_s)} left"
        return text


def format_seconds(seconds: float) -> str:
    """``95`` -> ``'1 min 35 s'``; under a minute: ``'40 s'``."""
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


@dataclass(frozen=True)
class RetrainJob:
    """A job, as ``POST /retrain``, ``GET /retrain/{job_id}``, ``POST /models/{v}/activate``
    and ``GET /jobs/{job_id}`` describe it (``kind``: retrain or activate)."""

    job_id: str
    state: str | None
    kind: str = "retrain"
    version: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    candidate_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    progress: RetrainProgress | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrainJob:
        """Parse a job; only ``job_id`` is required (``POST /retrain`` may say little more)."""
        candidate = data.get("candidate_version")
        return cls(
            job_id=str(data["job_id"]),
            state=data.get("state"),
            kind=str(data.get("kind") or "retrain"),
            version=str(data["version"]) if data.get("version") is not None else None,
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            candidate_version=str(candidate) if candidate is not None else None,
            metrics=dict(data.get("metrics") or {}),
            reason=data.get("reason"),
            # Absent from gateways older than the progress field, and before the job runs.
            progress=RetrainProgress.from_json(progress) if (progress := data.get("progress"))
            else None,
        )

    @property
    def finished(self) -> bool:
        """Whether the job is over (succeeded, rejected or failed): polling can stop."""
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class ReviewItem:
    """One item of the review queue (``GET /review``): a prediction worth labelling."""

    review_id: str
    reason: str
    created_at: str | None
    model_version: str
    image_url: str
    width: int
    height: int
    boxes: list[Box]
    request_id: str | None = None
    priority: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewItem:
        """Parse one entry of ``items``."""
        priority = data.get("priority")
        return cls(
            review_id=str(data["review_id"]),
            reason=str(data["reason"]),
            created_at=data.get("created_at"),
            model_version=str(data["model_version"]),
            image_url=str(data["image_url"]),
            width=int(data["image"]["width"]),
            height=int(data["image"]["height"]),
            boxes=[Box.from_json(b) for b in data["boxes"]],
            request_id=data.get("request_id"),
            priority=float(priority) if priority is not None else None,
        )


@dataclass(frozen=True)
class ReviewQueue:
    """The ``GET /review`` answer: the first open items and how many are open in all."""

    items: list[ReviewItem]
    total: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewQueue:
        """Parse the ``GET /review`` body."""
        return cls(
            items=[ReviewItem.from_json(item) for item in data["items"]],
            total=int(data["total"]),
        )
