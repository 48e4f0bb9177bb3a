"""The reference-only run: what ``ref_data.csv`` looks like, stored before any feedback exists.

Drift and quality runs need production rows, so a fresh platform would show an empty dashboard
until users send feedback. The reference run gives the "Reference" tab its data from the first
minute: boxes per class (count and share) and a per-column summary (mean, standard deviation) of
the embedding, one snapshot tagged ``reference``.

It is stored once per reference data set: a small marker file in the workspace names the
snapshot and the sha256 of the CSV it was built from. A restart with the same CSV adds nothing;
a rebuilt CSV (``make train`` then the ref data again) adds a new point, so the tab shows both.
The marker is only a cache of what the workspace holds: if its snapshot is gone (project
deleted, workspace wiped) the run is stored again.

Example:
    >>> snapshot = reference_snapshot(ref_df, datetime.now(), {"run_id": "r1"})  # doctest: +SKIP
    >>> reference_values(snapshot.dict())["share:circle"]  # doctest: +SKIP
    0.33
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import MeanValue, RowCount, StdValue, UniqueValueCount

from reporting.project import REFERENCE_TAG, TARGET_COLUMN
from reporting.snapshots import embedding_columns
from yoloserve.files import atomic_write

MARKER_NAME = "reference_run.json"


@dataclass(frozen=True)
class ReferenceMarker:
    """Which snapshot holds the reference run, and which CSV it summarises.

    Attributes:
        project_id: Evidently project the snapshot is in.
        snapshot_id: The stored snapshot.
        ref_sha256: sha256 of the reference CSV's bytes.
        rows: Rows of that CSV.
    """

    project_id: str
    snapshot_id: str
    ref_sha256: str
    rows: int


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (the reference CSV is a few MB: read in chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_marker(workspace: Path) -> ReferenceMarker | None:
    """The workspace's marker, or None when absent or unreadable (then the run is redone)."""
    try:
        return ReferenceMarker(**json.loads((workspace / MARKER_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_marker(workspace: Path, marker: ReferenceMarker) -> None:
    """Write the marker atomically (a crash leaves the old one or the new one)."""
    text = json.dumps(asdict(marker), indent=2) + "\n"
    atomic_write(workspace / MARKER_NAME, text.encode("utf-8"), temp_suffix=".tmp")


def reference_snapshot(
    ref_df: pd.DataFrame, timestamp: datetime, metadata: dict[str, str]
) -> Snapshot:
    """One snapshot of the reference rows alone: row count, class balance, embedding summary.

    Args:
        ref_df: Reference rows: ``emb_*`` and ``target``.
        timestamp: Snapshot timestamp (the x axis of the Reference tab).
        metadata: Put into the snapshot's metadata (``run_id``, the CSV's sha256...).

    Raises:
        ValueError: no ``emb_*`` columns or no ``target`` column.
    """
    columns = embedding_columns(ref_df)
    if not columns or TARGET_COLUMN not in ref_df.columns:
        raise ValueError(f"reference data needs emb_* columns and a {TARGET_COLUMN!r} column")
    data = ref_df[[*columns, TARGET_COLUMN]].dropna().copy()
    data[TARGET_COLUMN] = data[TARGET_COLUMN].astype(str)
    data[columns] = data[columns].astype(float)
    definition = DataDefinition(numerical_columns=columns, categorical_columns=[TARGET_COLUMN])
    report = Report(
        [
            RowCount(),
            UniqueValueCount(column=TARGET_COLUMN),
            *(MeanValue(column=c) for c in columns),
            *(StdValue(column=c) for c in columns),
        ]
    )
    return report.run(
        Dataset.from_pandas(data, definition),
        None,
        timestamp=timestamp,
        metadata={**metadata, "report": REFERENCE_TAG},
        tags=[REFERENCE_TAG],
        name=f"reference {timestamp:%Y-%m-%d %H:%M:%S}",
    )


def reference_values(snapshot_dict: dict[str, Any]) -> dict[str, float]:
    """The reference run's numbers, from its ``Snapshot.dict()``.

    Returns:
        ``rows``; ``count:<class>`` and ``share:<class>``; ``mean:<column>``, ``std:<column>``.
    """
    values: dict[str, float] = {}
    for metric in snapshot_dict.get("metrics", []):
        config, value = metric.get("config", {}), metric.get("value")
        name = str(config.get("type", "")).rsplit(":", 1)[-1]
        if name == "RowCount":
            values["rows"] = float(value)
        elif name == "UniqueValueCount":
            values.update({f"count:{k}": float(v) for k, v in value["counts"].items()})
            values.update({f"share:{k}": float(v) for k, v in value["shares"].items()})
        elif name in ("MeanValue", "StdValue"):
            values[f"{name[:-5].lower()}:{config['column']}"] = float(value)
    return values
