"""The model registry, in the store: versions, the default, class names, and jobs (their records
are ``yoloserve.modelserver.records``).

It records every packaged version (weights sha256, ``.mar`` file, metrics, parent, status, what it
was trained on), which version is the default, the class names, and the jobs: retrains, and the
activations/rollbacks the gateway records as intents for the controller.

Concurrency: the gateway replicas, the controller, job processes and CLIs share the store
(``yoloserve.store``). Reads are one snapshot; ``update()`` is one write transaction serialised
with every other registry writer (the store's ``registry`` lock), which re-reads under it, so no
update is lost. A job's own changes (progress, state) write its row alone. Errors are those of
``yoloserve.errors`` (``RegistryError``, ``UnknownVersion``, ``UnknownJob``).

A ``models/registry.json`` left by an older release is imported on first start
(``open_registry``) and renamed ``registry.json.migrated``.

Example:
    >>> reg = Registry(Store("sqlite:////tmp/example-store.db"))
    >>> reg.next_version()
    '1'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yoloserve.errors import RegistryError, RetrainAlreadyRunning, UnknownJob, UnknownVersion
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.records import (
    ACTIVE_STATES,
    FINAL_STATES,
    JOB_PREFIXES,
    JobKind,
    JobState,
    ModelVersion,
    RegistryData,
    RetrainJob,
    RetrainPhase,
    RetrainProgress,
    VersionStatus,
    next_job_id,
    utcnow,
)
from yoloserve.paths import REGISTRY_FILE
from yoloserve.store.engine import Store, open_store
from yoloserve.store.tables import JobRow, RegistryRow, VersionRow

logger = logging.getLogger("yoloserve.modelserver.registry")

# The records are defined in ``records``; their names stay importable from here, where most
# callers meet them with the registry.
__all__ = [
    "ACTIVE_STATES", "FINAL_STATES", "JOB_PREFIXES", "JobKind", "JobState", "ModelVersion",
    "Registry", "RegistryData", "RetrainJob", "RetrainPhase", "RetrainProgress", "VersionStatus",
    "import_registry_file", "open_registry", "utcnow",
]


def _job_row(job: RetrainJob, seq: int) -> JobRow:
    return JobRow(job_id=job.job_id, kind=job.kind, state=job.state, seq=seq,
                  record=job.model_dump(mode="json"))


class Registry:
    """The registry's records in the store: snapshot reads, serialised read-modify-writes.

    Args:
        store: the store; the process's default one (``STORE_DATABASE_URL``) when None.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or open_store()

    def __repr__(self) -> str:
        return f"Registry({self.store!r})"

    # ------------------------------------------------------------------------------ reading

    def load(self, *, jobs: bool = True) -> RegistryData:
        """Read the registry (one snapshot); an empty one before anything is recorded.

        Args:
            jobs: also read every job record. Readers of versions only pass False: jobs grow
                by a few a day for ever, versions far slower.
        """
        with self.store.read() as session:
            return _load(session, jobs=jobs)

    def head(self) -> RegistryData:
        """The name, class names and default version only (one row: what every feedback and
        readiness check needs), without the versions and jobs ``load`` reads."""
        with self.store.connect() as connection:
            meta = connection.execute(
                select(RegistryRow.name, RegistryRow.classes, RegistryRow.default_version)
                .where(RegistryRow.id == 1)).first()
        if meta is None:
            return RegistryData()
        return RegistryData(name=meta.name, classes=list(meta.classes),
                            default_version=meta.default_version)

    def get(self, version: str) -> ModelVersion:
        """The record of ``version`` (raises ``UnknownVersion``)."""
        if not version.isdigit():
            raise UnknownVersion(f"model version {version!r} is not in the registry")
        with self.store.read() as session:
            row = session.get(VersionRow, int(version))
        if row is None:
            raise UnknownVersion(f"model version {version!r} is not in the registry")
        return ModelVersion.model_validate(row.record)

    def get_job(self, job_id: str) -> RetrainJob:
        """The record of ``job_id`` (raises ``UnknownJob``)."""
        with self.store.read() as session:
            row = session.get(JobRow, job_id)
        if row is None:
            raise UnknownJob(f"job {job_id!r} is not in the registry")
        return RetrainJob.model_validate(row.record)

    def jobs(
        self, *, kind: JobKind | None = None, states: tuple[str, ...] = ()
    ) -> list[RetrainJob]:
        """Jobs in the order they were recorded, of one kind and in some states if given."""
        query = select(JobRow).order_by(JobRow.seq)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if states:
            query = query.where(JobRow.state.in_(states))
        with self.store.read() as session:
            return [RetrainJob.model_validate(row.record) for row in session.scalars(query)]

    def count_jobs(self, kind: JobKind) -> dict[str, int]:
        """Jobs of ``kind`` per state, counted by the database (no record is read or parsed)."""
        query = (select(JobRow.state, func.count()).where(JobRow.kind == kind)
                 .group_by(JobRow.state))
        with self.store.read() as session:
            return {state: int(n) for state, n in session.execute(query)}

    def next_version(self) -> str:
        """The version the next ``add_version`` would get, if nobody else adds one first.

        To pick and record a version without a race, do both inside ``update()``.
        """
        with self.store.read() as session:
            highest = session.scalar(select(func.max(VersionRow.version)))
        return str((highest or 0) + 1)

    def default(self) -> ModelVersion | None:
        """The default version's record, or ``None`` if none is set."""
        with self.store.read() as session:
            meta = session.get(RegistryRow, 1)
            if meta is None or meta.default_version is None:
                return None
            row = session.get(VersionRow, int(meta.default_version))
        return ModelVersion.model_validate(row.record) if row is not None else None

    def versions_signature(self) -> str | None:
        """A digest of the versions and the default, None while there are none: it changes
        whenever one of them does (what the MLflow mirror watches), never for job updates."""
        with self.store.read() as session:
            meta = session.get(RegistryRow, 1)
            rows = session.scalars(select(VersionRow).order_by(VersionRow.version)).all()
            if not rows:
                return None
            text = json.dumps([meta.default_version if meta else None,
                               [row.record for row in rows]], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    # ------------------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def update(self) -> Iterator[RegistryData]:
        """One serialised transaction: read, let the caller change the data, validate, write.

        Nothing is written if the block raises. Hold it briefly: every other registry writer
        waits.

        Example:
            >>> with Registry(Store("sqlite:////tmp/example-store.db")).update() as data:
            ...     data.classes = ["circle", "square", "triangle"]
        """
        with self.store.write("registry") as session:
            data = _load(session)
            before = data.model_copy(deep=True)
            yield data
            _save(session, RegistryData.model_validate(data.model_dump()), before)

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
        replace_classes: bool = False,
    ) -> ModelVersion:
        """Record a new version.

        Args:
            sha256: sha256 of the weights.
            mar: file name of the .mar in the model store.
            classes: the model's class names; the registry's once it has some.
            version: the version; the next free one if ``None``.
            metrics: evaluation metrics (e.g. ``map50``, ``map50_95``).
            parent: version it was fine-tuned from.
            trained_on: what it was trained on (e.g. ``ref_images``, ``feedback_images``).
            status: its status (a default version is always ``serving``).
            make_default: make it the default; ``None`` = only if there is no default yet.
            replace_classes: accept other classes (``RegistryData.add_version``).

        Returns:
            The stored record.

        Raises:
            RegistryError: the version exists, or the classes differ from the registry's.
            UnknownVersion: ``parent`` is not a recorded version.
        """
        with self.update() as data:
            record = ModelVersion(
                version=version or data.next_version(), sha256=sha256, mar=mar,
                metrics=metrics or {}, parent=parent, trained_on=trained_on or {}, status=status,
            )
            return data.add_version(record, classes, make_default, replace_classes)

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

    def record_job(self, job: RetrainJob | None = None, **fields: Any) -> RetrainJob:
        """Append a job; without a ``job_id`` it gets the next ``r-NNNN`` (``a-NNNN``).

        Args:
            job: a complete record, or ``None`` to build one from ``fields``.
            **fields: ``RetrainJob`` fields (``state``, ``kind``, ``started_at``, ...).

        Raises:
            RegistryError: the job id exists.
        """
        with self.store.write("jobs") as session:
            if job is None:
                kind = fields.get("kind", "retrain")
                ids = list(session.scalars(select(JobRow.job_id).where(JobRow.kind == kind)))
                fields["job_id"] = fields.get("job_id") or next_job_id(ids, kind)
                job = RetrainJob(**fields)
            if session.get(JobRow, job.job_id) is not None:
                raise RegistryError(f"job {job.job_id} already exists")
            seq = (session.scalar(select(func.max(JobRow.seq))) or 0) + 1
            session.add(_job_row(job, seq))
            return job

    def record_job_if_idle(self, **fields: Any) -> RetrainJob:
        """Record a queued job of ``fields["kind"]`` (a retrain by default) unless one of that
        kind is queued or running: the check and the insert are one serialised transaction, so
        two replicas asked at the same instant record one job.

        Raises:
            RetrainAlreadyRunning: a job of that kind is queued or running.
        """
        kind = fields.get("kind", "retrain")
        with self.store.write("jobs") as session:
            active = session.scalars(
                select(JobRow).where(JobRow.kind == kind, JobRow.state.in_(ACTIVE_STATES))
                .order_by(JobRow.seq).limit(1)).first()
            if active is not None:
                raise RetrainAlreadyRunning(f"{kind} job {active.job_id} is {active.state}")
            ids = list(session.scalars(select(JobRow.job_id).where(JobRow.kind == kind)))
            job = RetrainJob(**{"state": "queued", **fields, "job_id": next_job_id(ids, kind)})
            seq = (session.scalar(select(func.max(JobRow.seq))) or 0) + 1
            session.add(_job_row(job, seq))
            return job

    def request_activation(self, version: str) -> RetrainJob:
        """Record a queued activation of ``version`` (an intent the controller carries out),
        after checking it can serve.

        Raises:
            UnknownVersion: no such version.
            VersionRejected: it failed the retrain gate.
            VersionClassesDiffer: it detects other classes than the registry's (they changed).
        """
        self.load(jobs=False).check_activatable(version)
        return self.record_job(kind="activate", version=version, state="queued",
                               created_at=utcnow())

    def wait_job(self, job_id: str, timeout_s: float, poll_s: float = 0.5) -> RetrainJob:
        """Poll a job until it is in a final state or ``timeout_s`` passed; its last record."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job.state in FINAL_STATES or time.monotonic() >= deadline:
                return job
            time.sleep(poll_s)

    def set_job_progress(self, job_id: str, progress: RetrainProgress) -> RetrainJob:
        """Record where job ``job_id`` is (one row written; once per phase or epoch).

        Raises:
            UnknownJob: no such job.
        """
        return self.update_job(job_id, progress=progress.model_dump())

    def update_job(self, job_id: str, **changes: Any) -> RetrainJob:
        """Change fields of a job (e.g. ``state="running", started_at=utcnow()``).

        Raises:
            UnknownJob: no such job.
        """
        job = self.transition_job(job_id, None, **changes)
        assert job is not None  # no expected states: the change always applies
        return job

    def transition_job(
        self, job_id: str, expect: tuple[str, ...] | None, **changes: Any
    ) -> RetrainJob | None:
        """Change a job only if it is in one of the ``expect`` states (a compare-and-set).

        Two controllers, or a controller and a reaper, that race for one job: exactly one
        transition applies, the other gets None.

        Raises:
            UnknownJob: no such job.
        """
        with self.store.write("jobs") as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise UnknownJob(f"job {job_id!r} is not in the registry")
            if expect is not None and row.state not in expect:
                return None
            job = RetrainJob.model_validate({**row.record, **changes})
            row.record = job.model_dump(mode="json")
            row.state = job.state
            return job


def _load(session: Session, *, jobs: bool = True) -> RegistryData:
    meta = session.get(RegistryRow, 1)
    versions = session.scalars(select(VersionRow).order_by(VersionRow.version))
    rows: Iterable[JobRow] = (session.scalars(select(JobRow).order_by(JobRow.seq)) if jobs
                              else ())
    return RegistryData(
        name=meta.name if meta else MODEL_NAME,
        classes=list(meta.classes) if meta else [],
        default_version=meta.default_version if meta else None,
        versions=[ModelVersion.model_validate(row.record) for row in versions],
        jobs=[RetrainJob.model_validate(row.record) for row in rows],
    )


def _save(session: Session, data: RegistryData, before: RegistryData) -> None:
    """Write what ``update()``'s block changed, and nothing else."""
    meta = (data.name, data.classes, data.default_version)
    if meta != (before.name, before.classes, before.default_version):
        session.merge(RegistryRow(id=1, name=data.name, classes=list(data.classes),
                                  default_version=data.default_version))
    old_versions = {v.version: v for v in before.versions}
    for record in data.versions:
        if old_versions.get(record.version) != record:
            session.merge(VersionRow(version=int(record.version), status=record.status,
                                     sha256=record.sha256, record=record.model_dump(mode="json")))
    old_jobs = {j.job_id: j for j in before.jobs}
    if any(j.job_id not in old_jobs for j in data.jobs):
        seq = session.scalar(select(func.max(JobRow.seq))) or 0
    for job in data.jobs:
        if job.job_id not in old_jobs:
            seq += 1
            session.add(_job_row(job, seq))
        elif old_jobs[job.job_id] != job:
            row = session.get(JobRow, job.job_id)
            assert row is not None
            row.record, row.state = job.model_dump(mode="json"), job.state


def import_registry_file(registry: Registry, path: Path) -> bool:
    """Import a ``registry.json`` of an older release into an empty registry, once.

    The file is renamed ``<name>.migrated`` afterwards, so nothing reads stale versions from it
    and a second start does not import it again. A store that already has versions or jobs is
    left alone (the file is then only renamed).

    Returns:
        Whether anything was imported.
    """
    try:
        legacy = RegistryData.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:  # none, or another service imported it a moment ago
        return False
    imported = False
    with registry.update() as data:
        if not data.versions and not data.jobs:
            data.name, data.classes = legacy.name, legacy.classes
            data.default_version = legacy.default_version
            data.versions, data.jobs = legacy.versions, legacy.jobs
            imported = True
    with contextlib.suppress(FileNotFoundError):
        path.rename(path.with_name(path.name + ".migrated"))
    if imported:
        logger.warning("imported %d versions and %d jobs from %s into the store",
                       len(legacy.versions), len(legacy.jobs), path)
    return imported


def open_registry(store: Store | None = None, legacy_file: Path = REGISTRY_FILE) -> Registry:
    """The registry of a service: its store, with an older release's ``registry.json``
    imported first if one is still there."""
    registry = Registry(store)
    import_registry_file(registry, legacy_file)
    return registry
