"""Read the CSVs, build a run and store it: what ``run-once`` and ``watch`` share.

The gateway appends to ``prod_data.csv`` while we read it; a half-written last line comes back
with missing embedding values and is left out of the run (it will be complete next time).
Runs are added under a file lock in the workspace, so a ``watch`` and a manual ``run-once``
cannot create the project twice, and read back under the same lock, so a reader never meets a
snapshot file that is half written.

Example:
    >>> from reporting.config import Settings
    >>> outcome = run_once(Settings())  # doctest: +SKIP
    >>> print(outcome.message)  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from filelock import FileLock

from reporting.config import Settings
from reporting.project import find_project, get_or_create_project, open_workspace
from reporting.reference import (
    ReferenceMarker,
    file_sha256,
    read_marker,
    reference_snapshot,
    write_marker,
)
from reporting.runs import RunResult, add_run, build_run, read_latest_values
from reporting.snapshots import DriftOptions, embedding_columns
from yoloserve.drift_summary import DriftSummary, write_summary

# Read as text: class names and ids must not become floats ("1" vs 1.0) or NaN ("None").
_TEXT_COLUMNS = ("target", "prediction", "feedback_id", "request_id", "model_version", "image")
LOCK_NAME = ".reporting.lock"


@dataclass
class RunOutcome:
    """What one ``run_once`` call did.

    Attributes:
        message: One human line: what was added, or why nothing was.
        run: The run, or None when there was nothing to report.
        html: HTML reports written.
        project_id: Project the run went to (None when nothing was added).
    """

    message: str
    run: RunResult | None = None
    html: list[Path] = field(default_factory=list)
    project_id: str | None = None


def read_csv(path: Path) -> pd.DataFrame:
    """Read a ref or prod CSV with text columns kept as text; empty frame if absent."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    header = pd.read_csv(path, nrows=0).columns
    dtypes = {c: "string" for c in _TEXT_COLUMNS if c in header}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=True, on_bad_lines="skip")


def load_frames(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference frame and the latest ``window_rows`` prod rows (all rows if 0).

    Raises:
        FileNotFoundError: the reference CSV is missing.
    """
    if not settings.ref_csv.exists():
        raise FileNotFoundError(f"reference data not found: {settings.ref_csv}")
    ref = read_csv(settings.ref_csv)
    prod = read_csv(settings.prod_csv)
    if settings.window_rows and len(prod) > settings.window_rows:
        prod = prod.tail(settings.window_rows).reset_index(drop=True)
    columns = embedding_columns(ref)
    if len(prod) and all(c in prod.columns for c in columns):
        prod = prod.dropna(subset=columns).reset_index(drop=True)  # a half-written last line
    return ref, prod


def prune_html(html_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` HTML reports of each kind (``keep`` 0: delete none).

    Names start with a ``YYYYmmdd-HHMMSS`` stamp, so name order is time order.

    Returns:
        The files deleted.
    """
    if keep <= 0 or not html_dir.is_dir():
        return []
    by_kind: dict[str, list[Path]] = {}
    for path in html_dir.glob("*_*_*.html"):
        by_kind.setdefault(path.stem.rsplit("_", 1)[-1], []).append(path)
    removed = []
    for paths in by_kind.values():
        for path in sorted(paths)[:-keep]:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def drift_options(settings: Settings) -> DriftOptions:
    """The drift part of the settings."""
    return DriftOptions(
        method=settings.drift_method,
        threshold=settings.drift_threshold,
        drift_share=settings.drift_share,
        embedding_distance_threshold=settings.embedding_distance_threshold,
        projection=settings.embedding_projection,
        min_rows=settings.min_rows,
    )


def run_once(settings: Settings, timestamp: datetime | None = None) -> RunOutcome:
    """Build a run from the CSVs now and add it to the workspace (no-op if prod is empty).

    Args:
        settings: Paths and drift options.
        timestamp: Run timestamp; now (local time, as the Evidently UI shows it) if None.

    Returns:
        What was done; ``run`` is None when prod has no rows or no report could be built.
    """
    ref, prod = load_frames(settings)
    if prod.empty:
        return RunOutcome(f"no production rows in {settings.prod_csv} yet: nothing to report")
    run = build_run(ref, prod, timestamp or datetime.now(), drift_options(settings))
    if not run.snapshots:
        return RunOutcome("nothing to report: " + "; ".join(run.skipped), run=run)
    with workspace_lock(settings):
        workspace = open_workspace(settings.workspace)
        project = get_or_create_project(workspace, settings.project_name)
        html = add_run(workspace, project, run, settings.html_dir)
        prune_html(settings.html_dir, settings.html_keep)
        summary = drift_summary(run)
        if summary is not None:  # after the run is stored: the file never names a missing run
            write_summary(settings.drift_summary_path, summary)
    shown = ", ".join(
        f"{k}={run.values[k]:.3f}"
        for k in ("drift_share", "embedding_drift", "f1", "balanced_accuracy")
        if k in run.values
    )
    message = f"run added to '{settings.project_name}' ({len(prod)} prod rows): {shown}"
    if run.skipped:
        message += " [skipped " + "; ".join(run.skipped) + "]"
    return RunOutcome(message, run=run, html=html, project_id=str(project.id))


@dataclass
class BootstrapOutcome:
    """What one ``bootstrap`` call did.

    Attributes:
        message: One human line.
        project_id: The project (created or found).
        snapshot_id: The reference run's snapshot (stored now or earlier).
        added: Whether this call stored the reference run (False: it was already there).
    """

    message: str
    project_id: str
    snapshot_id: str
    added: bool


def bootstrap(settings: Settings, timestamp: datetime | None = None) -> BootstrapOutcome:
    """Make the project, its dashboard and the reference-only run exist; no-op when they do.

    What ``watch`` does first, so the Evidently UI has a project, panels and the Reference
    tab's data before any production row exists. Safe to repeat (a restarted demo): the project
    and panels are found by name and title, and the reference run is stored once per content of
    ``ref_csv`` (see :mod:`reporting.reference`).

    Args:
        settings: Workspace, project name and reference CSV.
        timestamp: Timestamp of a newly stored reference run; now if None.

    Raises:
        FileNotFoundError: the reference CSV is missing.
        ValueError: it lacks the emb_* or target columns.
    """
    if not settings.ref_csv.exists():
        raise FileNotFoundError(f"reference data not found: {settings.ref_csv}")
    sha = file_sha256(settings.ref_csv)
    # One lock for the check and the write: two starting watchers cannot both add the run.
    with workspace_lock(settings):
        workspace = open_workspace(settings.workspace)
        project = get_or_create_project(workspace, settings.project_name)
        marker = read_marker(settings.workspace)
        if (
            marker is not None
            and marker.project_id == str(project.id)
            and marker.ref_sha256 == sha
            and marker.snapshot_id in {str(s) for s in workspace.list_runs(project.id)}
        ):
            return BootstrapOutcome(
                f"project '{settings.project_name}' ready; reference run already stored "
                f"({marker.rows} rows)",
                str(project.id), marker.snapshot_id, added=False,
            )
        ref = read_csv(settings.ref_csv)
        snapshot = reference_snapshot(
            ref, timestamp or datetime.now(), {"run_id": uuid.uuid4().hex, "ref_sha256": sha}
        )
        ref_id = str(workspace.add_run(project.id, snapshot).id)
        write_marker(
            settings.workspace, ReferenceMarker(str(project.id), ref_id, sha, rows=len(ref))
        )
    return BootstrapOutcome(
        f"project '{settings.project_name}' ready; reference run stored ({len(ref)} rows)",
        str(project.id), ref_id, added=True,
    )


def drift_summary(run: RunResult) -> DriftSummary | None:
    """The run's drift headline for the gateway's ``/metrics``; None without a drift report."""
    values = run.values
    if "drift_share" not in values:
        return None
    return DriftSummary(
        run_id=run.run_id,
        timestamp=run.timestamp.timestamp(),  # naive local time, as datetime.now() gave it
        prod_rows=int(values.get("prod_rows", 0)),
        drift_share=values["drift_share"],
        dataset_drift=bool(values.get("dataset_drift", 0.0)),
        embedding_drift=values.get("embedding_drift"),
    )


def workspace_lock(settings: Settings) -> FileLock:
    """The lock every writer and reader of the workspace's runs holds."""
    settings.workspace.mkdir(parents=True, exist_ok=True)
    return FileLock(str(settings.workspace / LOCK_NAME), timeout=120)


def latest_values(settings: Settings, run_id: str | None = None) -> dict[str, float]:
    """Headline values of a run stored in the project (empty if there is no such run).

    Read back from the workspace, as the dashboard reads them, not recomputed from the CSVs.

    Args:
        settings: Workspace and project name.
        run_id: The run; None: the latest one (which may be another writer's, e.g. ``watch``).
    """
    with workspace_lock(settings):
        workspace = open_workspace(settings.workspace)
        project = find_project(workspace, settings.project_name)
        return {} if project is None else read_latest_values(workspace, project.id, run_id)
