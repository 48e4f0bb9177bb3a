"""The model registry: ``models/registry.json``, the source of truth for versions and the default.

It records every packaged version (weights sha256, ``.mar`` file, metrics, parent, status, what it
was trained on), which version is the default, the class names, and the retrain jobs.

Concurrency: the gateway, retrain jobs and CLIs share the file. Readers never lock: every write
goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``-d over the
old one, so a reader (or a crash at any instant) sees the old file or the new one, never half of
one. Writers serialise on ``registry.json.lock`` (``filelock``, across threads and processes) and
re-read the file under the lock, so no update is lost. Errors are those of ``yoloserve.errors``
(``RegistryError``, ``UnknownVersion``, ``UnknownJob``).

Example:
    >>> from pathlib import Path
    >>> reg = Registry(Path("/tmp/example-registry.json"))
    >>> reg.next_version()
    '1'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from yoloserve.errors import RegistryError, UnknownJob, UnknownVersion
from yoloserve.files import atomic_write
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.export import Runtime
from yoloserve.paths import REGISTRY_FILE

VersionStatus = Literal["ready", "serving", "rejected", "retired"]
"""``ready``: packaged, may be served; ``serving``: the default; ``rejected``: failed the retrain
gate (kept for the record); ``retired``: no longer served."""

JobState = Literal["queued", "running", "succeeded", "rejected", "failed"]

RetrainPhase = Literal["dataset", "training", "evaluating", "packaging", "swapping"]
"""Where a running job is, in order (``yoloserve.retrain.progress`` records it)."""

LOCK_TIMEOUT_S = 60.0  # packaging holds the lock while the .mar is built: seconds, not minutes


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
    runtime: Runtime = Field(
        default="torch", description="What the handler runs: the .pt or its export."
    )
    parity: dict[str, Any] = Field(
        default_factory=dict,
        description="The export's parity with the .pt, measured before it was registered "
        "(yoloserve.modelserver.parity.ParityReport); {} for the torch runtime.",
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
    """One retrain job, as ``GET /retrain/{job_id}`` reports it."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
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

    def next_job_id(self) -> str:
        """A job id not used yet: ``r-0001``, ``r-0002``, ..."""
        numbers = [int(j.job_id[2:]) for j in self.jobs if j.job_id[2:].isdigit()]
        return f"r-{max(numbers, default=0) + 1:04d}"

    def add_version(
        self, record: ModelVersion, classes: list[str], make_default: bool | None = None
    ) -> ModelVersion:
        """Append ``record`` after checking it fits (see ``Registry.add_version``)."""
        if any(v.version == record.version for v in self.versions):
            raise RegistryError(f"version {record.version} already exists")
        if record.parent is not None:
            self.get(record.parent)
        if self.classes and list(classes) != self.classes:
            message = f"classes {list(classes)} differ from the registry's {self.classes}"
            raise RegistryError(message)
        self.classes = list(classes)
        self.versions.append(record)
        if make_default or (make_default is None and self.default_version is None):
            self.set_default(record.version)
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
        for other in self.versions:
            if other.status == "serving" and other.version != version:
                other.status = "ready"
        record.status = "serving"
        self.default_version = version
        return record


class Registry:
    """File-backed registry with lock-free reads and atomic, locked writes.

    Args:
        path: the JSON file; ``models/registry.json`` (``YOLOSERVE_MODELS_DIR``) by default.
        lock_timeout: seconds to wait for another writer before ``filelock.Timeout``.
    """

    def __init__(self, path: Path | None = None, lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path) if path is not None else REGISTRY_FILE
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)

    # ------------------------------------------------------------------------------ reading

    def load(self) -> RegistryData:
        """Read the registry; an empty one if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return RegistryData()
        return RegistryData.model_validate_json(text)

    def get(self, version: str) -> ModelVersion:
        """The record of ``version`` (raises ``UnknownVersion``)."""
        return self.load().get(version)

    def get_job(self, job_id: str) -> RetrainJob:
        """The record of ``job_id`` (raises ``UnknownJob``)."""
        return self.load().get_job(job_id)

    def next_version(self) -> str:
        """The version the next ``add_version`` would get, if nobody else adds one first.

        To pick and record a version without a race, do both inside ``update()``.
        """
        return self.load().next_version()

    def default(self) -> ModelVersion | None:
        """The default version's record, or ``None`` if none is set."""
        data = self.load()
        return data.get(data.default_version) if data.default_version else None

    def find_by_sha256(self, sha256: str) -> ModelVersion | None:
        """The newest version packaged from weights with this sha256, if any."""
        matches = [v for v in self.load().versions if v.sha256 == sha256]
        return max(matches, key=lambda v: int(v.version)) if matches else None

    # ------------------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def update(self) -> Iterator[RegistryData]:
        """Lock, read, let the caller change the data, validate and write it atomically.

        Nothing is written if the block raises. Hold it briefly: every other writer waits.

        Example:
            >>> with Registry(Path("/tmp/example-registry.json")).update() as data:
            ...     data.classes = ["circle", "square", "triangle"]
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = self.load()
            yield data
            self._write(RegistryData.model_validate(data.model_dump()))

    def _write(self, data: RegistryData) -> None:
        atomic_write(self.path, (data.model_dump_json(indent=2) + "\n").encode(), sync_dir=True)

    def add_version(
        self,
        *,
        sha256: str,
        mar: str,
        classes: list[str],
        version: str | None = None,
        metrics: dict[str, Any] | None = None,
        parent: str | None = None,
        trained_on: dict[str, Any] | None = None,
        status: VersionStatus = "ready",
        make_default: bool | None = None,
    ) -> ModelVersion:
        """Record a new version.

        Args:
            sha256: sha256 of the weights.
            mar: file name of the .mar in the model store.
            classes: the model's class names; must equal the registry's once it has some.
            version: the version; the next free one if ``None``.
            metrics: evaluation metrics (e.g. ``map50``, ``map50_95``).
            parent: version it was fine-tuned from.
            trained_on: what it was trained on (e.g. ``ref_images``, ``feedback_images``).
            status: its status (a default version is always ``serving``).
            make_default: make it the default; ``None`` = only if there is no default yet.

        Returns:
            The stored record.

        Raises:
            RegistryError: the version exists, or the classes differ from the registry's.
            UnknownVersion: ``parent`` is not a recorded version.
        """
        with self.update() as data:
            record = ModelVersion(
                version=version or data.next_version(),
                sha256=sha256,
                mar=mar,
                metrics=metrics or {},
                parent=parent,
                trained_on=trained_on or {},
                status=status,
            )
            return data.add_version(record, classes, make_default)

    def set_default(self, version: str) -> ModelVersion:
        """Make ``version`` the default (``serving``); the previous default becomes ``ready``.

        Raises:
            UnknownVersion: no such version.
            RegistryError: the version was rejected.
        """
        with self.update() as data:
            return data.set_default(version)

    def set_status(self, version: str, status: VersionStatus) -> ModelVersion:
        """Change a version's status (not to or from ``serving``: use ``set_default``).

        Raises:
            UnknownVersion: no such version.
            RegistryError: the change would add or remove the default.
        """
        with self.update() as data:
            record = data.get(version)
            if status == "serving" or record.status == "serving":
                raise RegistryError("the serving version changes only through set_default")
            record.status = status
            return record

    def next_job_id(self) -> str:
        """A job id not used yet: ``r-0001``, ``r-0002``, ... (racy: prefer ``record_job()``)."""
        return self.load().next_job_id()

    def record_job(self, job: RetrainJob | None = None, **fields: Any) -> RetrainJob:
        """Append a retrain job; without a ``job_id`` it gets the next ``r-NNNN``.

        Args:
            job: a complete record, or ``None`` to build one from ``fields``.
            **fields: ``RetrainJob`` fields (``state``, ``started_at``, ...).

        Raises:
            RegistryError: the job id exists.
        """
        with self.update() as data:
            if job is None:
                fields["job_id"] = fields.get("job_id") or data.next_job_id()
                job = RetrainJob(**fields)
            if any(j.job_id == job.job_id for j in data.jobs):
                raise RegistryError(f"job {job.job_id} already exists")
            data.jobs.append(job)
            return job

    def set_job_progress(self, job_id: str, progress: RetrainProgress) -> RetrainJob:
        """Record where job ``job_id`` is (one locked write; call it once per phase or epoch).

        Raises:
            UnknownJob: no such job.
        """
        return self.update_job(job_id, progress=progress.model_dump())

    def update_job(self, job_id: str, **changes: Any) -> RetrainJob:
        """Change fields of a job (e.g. ``state="running", started_at=utcnow()``).

        Raises:
            UnknownJob: no such job.
        """
        with self.update() as data:
            jobs = data.jobs
            for i, job in enumerate(jobs):
                if job.job_id == job_id:
                    jobs[i] = RetrainJob.model_validate({**job.model_dump(), **changes})
                    return jobs[i]
            raise UnknownJob(f"retrain job {job_id!r} is not in the registry")

