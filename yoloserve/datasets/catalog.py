"""Imported datasets in the store (the ``datasets`` table): the one record of what exists and
which one is the reference.

A dataset's folder is ``<data_dir>/datasets/<name>/`` (``images/{train,val,test}``,
``labels/...``, ``data.yaml``); the row says what it holds, and ``is_reference`` marks the one
whose train split built ``ref_data.csv`` (at most one: setting it clears the others in the same
transaction).

Example:
    >>> from yoloserve.store.settings import StoreSettings
    >>> reference_dir(StoreSettings())  # the retrain's reference sample, if one was imported
    PosixPath('/srv/yoloserve/data/datasets/pets')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from yoloserve import paths
from yoloserve.errors import UnknownDataset
from yoloserve.store.engine import Store, open_store
from yoloserve.store.settings import StoreSettings
from yoloserve.store.tables import DatasetRow

DATASETS_FOLDER = "datasets"
_LOCK = "datasets"


@dataclass(frozen=True)
class DatasetRecord:
    """One imported dataset as the store has it.

    Attributes:
        counts: ``{split: {"images": n, "boxes": m}}``.
        manifest_sha256: sha256 of ``manifest.json`` (every file's path and sha256).
    """

    name: str
    format: str
    source: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    manifest_sha256: str
    created_at: datetime
    is_reference: bool = False


def dataset_dir(data_dir: Path, name: str) -> Path:
    """Where the dataset ``name`` lives under ``data_dir``."""
    return Path(data_dir) / DATASETS_FOLDER / name


def _record(row: DatasetRow) -> DatasetRecord:
    return DatasetRecord(row.name, row.format, row.source, list(row.classes), dict(row.counts),
                         row.manifest_sha256, row.created_at, bool(row.is_reference))


def get(store: Store, name: str) -> DatasetRecord | None:
    """The record of ``name``, or None."""
    with store.read() as session:
        row = session.get(DatasetRow, name)
        return _record(row) if row is not None else None


def list_datasets(store: Store) -> list[DatasetRecord]:
    """Every imported dataset, oldest first."""
    with store.read() as session:
        rows = session.scalars(select(DatasetRow).order_by(DatasetRow.created_at)).all()
        return [_record(row) for row in rows]


def save(store: Store, record: DatasetRecord) -> None:
    """Insert ``record``, or replace the row of the same name (an import with ``--replace``).

    A replaced reference stays the reference only if ``record.is_reference`` says so.
    """
    with store.write(_LOCK) as session:
        if record.is_reference:
            session.execute(update(DatasetRow).values(is_reference=False))
        session.merge(DatasetRow(
            name=record.name, format=record.format, source=record.source,
            classes=list(record.classes), counts=record.counts,
            manifest_sha256=record.manifest_sha256, created_at=record.created_at,
            is_reference=record.is_reference))


def delete(store: Store, name: str) -> None:
    """Forget ``name`` (its folder is the caller's)."""
    with store.write(_LOCK) as session:
        row = session.get(DatasetRow, name)
        if row is not None:
            session.delete(row)


def set_reference(store: Store, name: str) -> None:
    """Make ``name`` the reference dataset (and no other).

    Raises:
        UnknownDataset: no dataset of that name.
    """
    with store.write(_LOCK) as session:
        if session.get(DatasetRow, name) is None:
            raise UnknownDataset(f"no imported dataset is named {name!r}")
        session.execute(update(DatasetRow).values(is_reference=DatasetRow.name == name))


def reference(store: Store) -> DatasetRecord | None:
    """The reference dataset's record, or None when none was imported as the reference."""
    with store.read() as session:
        row = session.scalars(select(DatasetRow).where(DatasetRow.is_reference)).first()
        return _record(row) if row is not None else None


def reference_dir(
    store_settings: StoreSettings | None = None, data_dir: Path | None = None
) -> Path | None:
    """The reference dataset's folder (a YOLO dataset with ``data.yaml``), or None.

    Args:
        store_settings: which store (``STORE_*``; the environment's when None).
        data_dir: the data root (``YOLOSERVE_DATA_DIR`` when None).
    """
    store = open_store((store_settings or StoreSettings()).url)
    found = reference(store)
    if found is None:
        return None
    return dataset_dir(data_dir or paths.DATA_DIR, found.name)
