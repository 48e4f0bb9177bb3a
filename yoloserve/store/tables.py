"""The store's tables (SQLAlchemy 2 declarative). Alembic's migrations create them.

Records whose shape the API already defines (a model version, a job) keep their fields in a
JSON column next to the columns that are queried or constrained (status, state, kind), so the
pydantic models of ``yoloserve.modelserver.registry`` stay the one description of a record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Base of every table of the store."""


class RegistryRow(Base):
    """The registry's one row: the model name, its class names and the default version."""

    __tablename__ = "registry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_version: Mapped[str | None] = mapped_column(String(16), nullable=True)


class VersionRow(Base):
    """One packaged model version (``ModelVersion``)."""

    __tablename__ = "model_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class JobRow(Base):
    """One job: a retrain, or an activation/rollback intent the controller carries out."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_kind_state", "kind", "state"),)

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class LeaseRow(Base):
    """Who holds a named lease (the acting controller) and until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transitions: Mapped[int] = mapped_column(Integer, default=0)


class FeedbackRowRecord(Base):
    """One row of feedback: a box's embedding, its ground truth and what the model predicted.

    ``id`` is the row's position (1, 2, ...): assigned as the highest id + 1 inside the write
    transaction that holds the feedback lock, so ids have no gaps, commit in id order (what the
    CSV export relies on) and the highest id is the row total every replica agrees on.
    """

    __tablename__ = "feedback_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    feedback_id: Mapped[str] = mapped_column(String(64), index=True)
    embedding: Mapped[list[float]] = mapped_column(JSON)
    target: Mapped[str] = mapped_column(String(200))
    prediction: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    image: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKeyRow(Base):
    """A named feedback (``Idempotency-Key``, or request id + content) and its first answer.

    Inserted in the transaction of the feedback's rows (the primary key is the unique
    constraint: one of two concurrent requests stores); ``status`` is ``stored`` until the
    answer's body is known (the retrain decision comes after the commit), then ``answered``.
    """

    __tablename__ = "idempotency_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    feedback_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    rows_written: Mapped[int] = mapped_column(Integer)
    prod_rows_total: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(200))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class FeedbackExportRow(Base):
    """How far a CSV export got: the last row id in it and the file's size right after it."""

    __tablename__ = "feedback_exports"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewItemRow(Base):
    """One item of the gateway's review queue: a sampled prediction waiting for a label, or a
    closed one kept to answer "already closed". Its image is a file (``image_file``)."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_open", "status", "priority", "seq"),)

    review_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    priority: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seq: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    model_version: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    boxes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    image_file: Mapped[str] = mapped_column(String(64))


class ReviewAdmissionRow(Base):
    """One admission into the review queue (wall-clock seconds): every gateway replica counts
    the same rows, so the per-minute limit is one budget for all of them."""

    __tablename__ = "review_admissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    admitted_at: Mapped[float] = mapped_column(Float, index=True)


class DatasetRow(Base):
    """One imported labelled dataset (``yoloserve.datasets``), its folder
    ``<data_dir>/datasets/<name>/``. At most one row has ``is_reference`` set: the dataset whose
    train split built ``ref_data.csv`` and that retraining samples from."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(1000))
    classes: Mapped[list[str]] = mapped_column(JSON)
    counts: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    is_reference: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
