"""The registry's records: a model version, a job and its progress, the registry as a whole.

Plain pydantic models and the names of their states, with no store in them: the registry
(``yoloserve.modelserver.registry``) keeps them in the store, and the gateway, controller and
job processes read them from there.

Example:
    >>> RegistryData().next_job_id("activate")
    'a-0001'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from yoloserve.errors import (
    RegistryError,
    UnknownJob,
    UnknownVersion,
    VersionClassesDiffer,
    VersionRejected,
)
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.export import RecordedRuntime

VersionStatus = Literal["ready", "serving", "rejected", "retired"]
"""``ready``: packaged, may be served; ``serving``: the default; ``rejected``: failed the retrain
gate (kept for the record); ``retired``: no longer served."""

JobState = Literal["queued", "running", "succeeded", "rejected", "failed"]

JobKind = Literal["retrain", "activate"]
"""``retrain``: fine-tune, gate, package, swap; ``activate``: serve a registered version (an
activation or a rollback, recorded by the gateway or an operator, carried out by the
controller)."""

JOB_PREFIXES: dict[str, str] = {"retrain": "r", "activate": "a"}
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
FINAL_STATES: tuple[JobState, ...] = ("succeeded", "rejected", "failed")

RetrainPhase = Literal["dataset", "training", "evaluating", "packaging", "swapping"]
"""Where a running job is, in order (``yoloserve.retrain.progress`` records it)."""


def utcnow() -> datetime:
    """Now, in UTC, to the second (what the registry stores)."""
    return datetime.now(UTC).replace(microsecond=0)


class ModelVersion(BaseModel):
    """One packaged model version."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[1-9][0-9]*$", description="Integer as a string: '1', '2'.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the weights file.")
    mar: str = Field(description="File name of the .mar in the model store.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    parent: str | None = Field(default=None, description="Version it was fine-tuned from.")
    status: VersionStatus = "ready"
    trained_on: dict[str, Any] = Field(default_factory=dict)
    benchmark: dict[str, Any] = Field(
        default_factory=dict,
        description="Scores on the fixed benchmark set: {'set': {name, images, "
        "manifest_sha256}, 'map50': ..}; the same images for every version.",
    )
    mlflow_run_id: str | None = Field(default=None, description="MLflow run that made it.")
    mlflow_experiment_id: str | None = Field(default=None, description="That run's experiment.")
    runtime: RecordedRuntime = Field(
        default="torch",
        description="What the handler runs: an export of the .pt (torch: the .pt itself, in "
        "records of earlier releases).",
    )
    parity: dict[str, Any] = Field(
        default_factory=dict,
        description="The export's parity with the .pt, measured before it was registered "
        "(yoloserve.modelserver.parity.ParityReport); {} for INT8 runtimes and for the torch "
        "runtime of earlier releases.",
    )
    accuracy: dict[str, Any] = Field(
        default_factory=dict,
        description="mAP50 and mAP50-95 of what serves and of the .pt on the fixed benchmark "
        "set, measured before it was registered (yoloserve.modelserver.accuracy.AccuracyReport): "
        "the gate of the INT8 runtimes; {} when packaged without the set.",
    )
    selection: dict[str, Any] = Field(
        default_factory=dict,
        description="How RUNTIME=auto chose the runtime (yoloserve.modelserver.selection): each "
        "gated runtime's median latency on this machine, those refused and why, the CPU; {} "
        "when a runtime was named.",
    )
    classes: list[str] = Field(
        default_factory=list,
        description="The class names it detects, in index order; [] in records older than "
        "class changes (they detect the registry's classes of their time).",
    )


class RetrainProgress(BaseModel):
    """How far a job got: its phase and, while training, epoch i of N with an ETA."""

    model_config = ConfigDict(extra="forbid")

    phase: RetrainPhase
    epoch: int | None = Field(default=None, ge=0, description="Epochs finished (training).")
    epochs: int | None = Field(default=None, ge=1, description="Epochs in all (training).")
    eta_s: float | None = Field(
        default=None, ge=0, description="Seconds training still needs, from measured epochs."
    )
    updated_at: datetime | None = None


class RetrainJob(BaseModel):
    """One job, as ``GET /retrain/{job_id}`` or ``GET /jobs/{job_id}`` reports it: a retrain, or
    an activation (``kind="activate"``, ``version`` the version to serve)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    kind: JobKind = "retrain"
    version: str | None = Field(default=None, description="activate: the version to serve.")
    state: JobState = "queued"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    candidate_version: str | None = None
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="{'candidate': {...}, 'current': {...}} on one eval set."
    )
    reason: str | None = None
    created_at: datetime | None = None
    trigger: str | None = Field(default=None, description="What started it: 'feedback', 'api'.")
    parent: str | None = Field(default=None, description="Version the candidate is tuned from.")
    data: dict[str, Any] = Field(default_factory=dict, description="Image counts it used.")
    pid: int | None = Field(default=None, description="Process running it (stale detection).")
    # Optional: records written before progress existed load unchanged. Kept after the end, so
    # a failed job says which phase it reached.
    progress: RetrainProgress | None = Field(
        default=None, description="Phase (and epoch/ETA) the job reached; None before it runs."
    )


class RegistryData(BaseModel):
    """The whole registry file."""

    model_config = ConfigDict(extra="forbid")

    name: str = MODEL_NAME
    classes: list[str] = Field(default_factory=list)
    default_version: str | None = None
    versions: list[ModelVersion] = Field(default_factory=list)
    jobs: list[RetrainJob] = Field(default_factory=list)

    def get(self, version: str) -> ModelVersion:
        """The record of ``version``.

        Raises:
            UnknownVersion: no such version.
        """
        for record in self.versions:
            if record.version == version:
                return record
        raise UnknownVersion(f"model version {version!r} is not in the registry")

    def get_job(self, job_id: str) -> RetrainJob:
        """The record of ``job_id``.

        Raises:
            UnknownJob: no such job.
        """
        for job in self.jobs:
            if job.job_id == job_id:
                return job
        raise UnknownJob(f"retrain job {job_id!r} is not in the registry")

    def next_version(self) -> str:
        """One more than the highest version ever recorded (versions are never reused)."""
        return str(max((int(v.version) for v in self.versions), default=0) + 1)

    def next_job_id(self, kind: JobKind = "retrain") -> str:
        """A job id not used yet: ``r-0001``, ``r-0002``, ... (``a-0001`` for activations)."""
        return next_job_id([j.job_id for j in self.jobs], kind)

    def add_version(
        self, record: ModelVersion, classes: list[str], make_default: bool | None = None,
        replace_classes: bool = False,
    ) -> ModelVersion:
        """Append ``record`` after checking it fits (see ``Registry.add_version``).

        ``replace_classes`` lets a model with other classes in (a team's own model replacing the
        shipped one): it becomes the default, and versions of the old classes stay recorded but
        can no longer serve (feedback, review and retrain speak the registry's classes).
        """
        if any(v.version == record.version for v in self.versions):
            raise RegistryError(f"version {record.version} already exists")
        if record.parent is not None:
            self.get(record.parent)
        changed = check_classes(self.classes, classes, replace_classes)
        for older in self.versions:
            if not older.classes:
                older.classes = list(self.classes)  # what they detect, before it changes
        self.classes = list(classes)
        record.classes = list(classes)
        self.versions.append(record)
        if changed or make_default or (make_default is None and self.default_version is None):
            self.set_default(record.version)
        return record

    @property
    def version_classes(self) -> dict[str, list[str]]:
        """Each version's recorded classes ([]: a record older than class changes)."""
        return {v.version: list(v.classes) for v in self.versions}

    def check_activatable(self, version: str) -> ModelVersion:
        """``version``'s record, when an activation of it may be recorded.

        Raises:
            UnknownVersion: no such version.
            VersionRejected: it failed the retrain gate.
            VersionClassesDiffer: it detects other classes than the registry's (they changed).
        """
        record = self.get(version)
        if record.status == "rejected":
            raise VersionRejected(f"version {version} was rejected and cannot be the default")
        if record.classes and self.classes and record.classes != self.classes:
            raise VersionClassesDiffer(f"version {version} detects {record.classes}, the "
                                       f"platform {self.classes}: it cannot serve again")
        return record

    def set_default(self, version: str) -> ModelVersion:
        """Make ``version`` the default (``serving``); the previous default becomes ``ready``.

        Raises:
            UnknownVersion: no such version.
            RegistryError: the version was rejected.
        """
        record = self.get(version)
        if record.status == "rejected":
            raise RegistryError(f"version {version} was rejected and cannot be the default")
        if record.classes and self.classes and record.classes != self.classes:
            raise RegistryError(
                f"version {version} detects {record.classes}, not the platform's classes "
                f"{self.classes} (they changed since): it cannot serve again"
            )
        for other in self.versions:
            if other.status == "serving" and other.version != version:
                other.status = "ready"
        record.status = "serving"
        self.default_version = version
        return record


def check_classes(known: list[str], classes: list[str], replace_classes: bool) -> bool:
    """Whether ``classes`` change the registry's ``known`` ones (allowed with ``replace_classes``).

    Raises:
        RegistryError: they differ and ``replace_classes`` is false.
    """
    changed = bool(known) and list(classes) != list(known)
    if changed and not replace_classes:
        raise RegistryError(
            f"classes {list(classes)} differ from the registry's {list(known)}: to serve a "
            "model of other classes instead, package it with --replace-classes"
        )
    return changed


def next_job_id(existing: list[str], kind: JobKind) -> str:
    """The next id of ``kind`` after ``existing`` ids: ``r-0001``, ``r-0002``, ..."""
    prefix = f"{JOB_PREFIXES[kind]}-"
    numbers = [int(i[2:]) for i in existing if i.startswith(prefix) and i[2:].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1:04d}"
