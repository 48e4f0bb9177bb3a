"""One monitoring run: build its snapshots from the ref and prod frames, store them, read back.

A run is the drift and the classification report (``reporting.snapshots``) taken at one
timestamp and sharing one ``run_id`` in their metadata; ``add_run`` puts them into the Evidently
project and writes their HTML, ``read_latest_values`` reads a stored run's headline numbers back
as the dashboard shows them.

Example:
    >>> from datetime import datetime
    >>> run = build_run(ref_df, prod_df, datetime.now())  # doctest: +SKIP
    >>> run.values["drift_share"], run.values["balanced_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently.core.report import Snapshot
from evidently.ui.workspace import Project, WorkspaceBase

from reporting.project import DRIFT_TAG, QUALITY_TAG, REFERENCE_TAG
from reporting.snapshots import (
    DriftOptions,
    classification_snapshot,
    drift_snapshot,
    embedding_columns,
    feedback_rows,
    headline_values,
)


@dataclass
class RunResult:
    """One run: its snapshots by report kind, and the headline values read from them.

    Attributes:
        run_id: Shared by the run's snapshots (snapshot metadata ``run_id``).
        timestamp: Timestamp of every snapshot of the run.
        snapshots: ``{"drift": ..., "classification": ...}``; a report is absent when its rows
            are missing (see ``skipped``).
        values: Headline numbers, as :func:`headline_values` reads them from the snapshots.
        skipped: Why a report was left out, one line each.
    """

    run_id: str
    timestamp: datetime
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def build_run(
    ref_df: pd.DataFrame,
    prod_df: pd.DataFrame,
    timestamp: datetime,
    options: DriftOptions | None = None,
) -> RunResult:
    """Compute the drift and classification snapshots of one run.

    Args:
        ref_df: Reference rows: ``emb_0..emb_{n-1}``, ``target``.
        prod_df: Production rows to judge (the caller picks the window): ``emb_*``, ``target``,
            ``prediction``, and optionally ``model_version`` and the other log columns.
        timestamp: Timestamp of both snapshots (the x axis of the dashboard).
        options: Drift settings; library defaults when None.

    Returns:
        The run. A report is skipped, with the reason in ``skipped``, when prod has fewer than
        ``options.min_rows`` rows (drift) or no feedback rows (classification).

    Raises:
        ValueError: ref has no embedding columns, or prod lacks some of them (another embedder).
    """
    options = options or DriftOptions()
    columns = embedding_columns(ref_df)
    if not columns:
        raise ValueError("reference data has no emb_* columns")
    missing = [c for c in columns if c not in prod_df.columns]
    if missing and len(prod_df):
        raise ValueError(
            f"prod data lacks {len(missing)} of the {len(columns)} reference embedding columns "
            f"(first: {missing[0]}): ref and prod come from different embedders"
        )
    run = RunResult(run_id=uuid.uuid4().hex, timestamp=timestamp)
    metadata = {"run_id": run.run_id, "prod_rows": str(len(prod_df))}
    if "model_version" in prod_df.columns:
        versions = sorted({str(v) for v in prod_df["model_version"].dropna()})
        metadata["model_versions"] = ",".join(versions)

    drift_rows = prod_df.dropna(subset=columns) if not missing else prod_df.iloc[0:0]
    if len(drift_rows) >= options.min_rows:
        run.snapshots[DRIFT_TAG] = drift_snapshot(
            ref_df.dropna(subset=columns), drift_rows, columns, timestamp, metadata, options
        )
    else:
        run.skipped.append(
            f"drift: {len(drift_rows)} prod rows with embeddings, need {options.min_rows}"
        )

    labelled = feedback_rows(prod_df)
    if len(labelled):
        run.snapshots[QUALITY_TAG] = classification_snapshot(labelled, timestamp, metadata)
    else:
        run.skipped.append("classification: no prod rows with both target and prediction")

    for kind, snapshot in run.snapshots.items():
        run.values.update(headline_values(kind, snapshot.dict()))
    return run


def add_run(
    workspace: WorkspaceBase, project: Project, run: RunResult, html_dir: Path
) -> list[Path]:
    """Add the run's snapshots to the project and save each as a timestamped HTML report.

    Args:
        workspace: Evidently workspace holding ``project``.
        project: Target project.
        run: Result of :func:`build_run`.
        html_dir: Folder for ``<YYYYmmdd-HHMMSS>_<kind>.html`` files (created if needed).

    Returns:
        The HTML files written, one per snapshot.
    """
    html_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{run.timestamp:%Y%m%d-%H%M%S}"
    written = []
    for kind, snapshot in run.snapshots.items():
        workspace.add_run(project.id, snapshot)
        path = html_dir / f"{stamp}_{run.run_id[:8]}_{kind}.html"
        snapshot.save_html(str(path))
        written.append(path)
    return written


def read_latest_values(
    workspace: WorkspaceBase, project_id: Any, run_id: str | None = None
) -> dict[str, float]:
    """Headline values of one run stored in the project, read back from its snapshots.

    Args:
        workspace: Evidently workspace.
        project_id: Project id (UUID or its string).
        run_id: The run (snapshot metadata ``run_id``); None: the latest run by timestamp.
            The reference-only run (:mod:`reporting.reference`) is never one of them.

    Returns:
        Same keys as :attr:`RunResult.values`; empty when there is no such run.
    """
    by_run: dict[str, list[Any]] = {}
    newest: tuple[datetime, str] | None = None
    for snapshot_id in workspace.list_runs(project_id):
        model = workspace.get_run(project_id, snapshot_id)
        # The reference run describes ref_data.csv, not production: never "the latest run".
        if model is None or REFERENCE_TAG in model.tags:
            continue
        snapshot_run = str(model.metadata.get("run_id", snapshot_id))
        by_run.setdefault(snapshot_run, []).append(model)
        key = (model.timestamp, snapshot_run)
        if newest is None or key > newest:
            newest = key
    wanted = run_id if run_id is not None else (newest[1] if newest else None)
    values: dict[str, float] = {}
    for model in by_run.get(wanted or "", []):
        kind = DRIFT_TAG if DRIFT_TAG in model.tags else QUALITY_TAG
        values.update(headline_values(kind, Snapshot.load_model(model).dict()))
    return values
