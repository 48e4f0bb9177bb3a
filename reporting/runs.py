"""Build one monitoring run from the reference and production frames, and store it.

A run is two Evidently reports taken at one timestamp:

* **drift** (tag ``drift``): prod vs ref on the ``emb_*`` columns. ``DataDriftPreset`` tests
  each column (two-sample KS by default, see ``reporting.config``) and gives the share of drifted
  columns; ``EmbeddingsDrift`` scores the embedding as a whole with the *distance* method
  (euclidean distance between the mean prod and mean ref vectors): milliseconds, and directly
  readable for the mean shift a new image domain causes, where the model method trains a
  classifier per run.
* **classification** (tag ``classification``): target vs prediction on the prod rows that carry
  feedback. The two reports stay apart because ref has no ``prediction`` column, and one report
  over both frames fails ("Column (prediction) is partially present").

Treatment of the detection pseudo-classes: a prediction matched to no object has target
``__background__`` (a false positive) and an object the model missed has prediction
``__missed__`` (a false negative). Both are kept as classes of the confusion, so a false
positive lowers the precision of the class that was predicted and a miss lowers the recall of the
class that was missed, exactly as in detection metrics. Macro averages (F1, precision, recall)
are over every label seen in target or prediction, so they include these two classes, whose
scores are 0 by construction (nothing is ever *predicted* ``__background__``, nothing *is*
``__missed__``). The per-class panels show the real classes beside them.

Balanced accuracy is not an Evidently metric, and Evidently's macro recall differs from it here:
macro recall counts ``__missed__`` (a class with no true rows) as a class with recall 0, while
scikit-learn's ``balanced_accuracy_score`` averages recall over the classes present in the target
only. It does count ``__background__`` (true rows, never predicted: recall 0), so with K real
classes and at least one false positive it is at most K/(K+1). It is computed with scikit-learn
and put into the classification report as a constant column ``balanced_accuracy`` read by the
built-in ``MaxValue`` metric: the value then lives in the snapshot like any other metric, the UI
plots it with no custom code (a custom Metric class would have to be importable inside the
``evidently ui`` process to load the snapshot), and the HTML report shows it.

Example:
    >>> from datetime import datetime
    >>> run = build_run(ref_df, prod_df, datetime.now())  # doctest: +SKIP
    >>> run.values["drift_share"], run.values["balanced_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, MulticlassClassification, Report
from evidently.core.report import Snapshot
from evidently.metrics import (
    EmbeddingsDrift,
    F1ByLabel,
    F1Score,
    MaxValue,
    Precision,
    PrecisionByLabel,
    Recall,
    RecallByLabel,
    RowCount,
)
from evidently.metrics.embeddings import DistanceDriftMethod
from evidently.presets import DataDriftPreset
from evidently.ui.workspace import Project, WorkspaceBase
from sklearn.decomposition import PCA
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import balanced_accuracy_score

from reporting.project import BALANCED_ACCURACY_COLUMN, DRIFT_TAG, QUALITY_TAG

TARGET = "target"
PREDICTION = "prediction"
BACKGROUND = "__background__"
MISSED = "__missed__"
EMBEDDINGS_NAME = "embeddings"
_EMB_COLUMN = re.compile(r"^emb_(\d+)$")


@dataclass(frozen=True)
class DriftOptions:
    """How the drift report decides that something moved (see ``reporting.config.Settings``)."""

    method: str = "ks"
    threshold: float = 0.05
    drift_share: float = 0.5
    embedding_distance_threshold: float = 2.0
    projection: Literal["pca", "tsne"] = "pca"
    min_rows: int = 5


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


def embedding_columns(df: pd.DataFrame) -> list[str]:
    """The ``emb_<i>`` columns of ``df``, in index order (``emb_2`` before ``emb_10``)."""
    found = [(int(m.group(1)), c) for c in df.columns if (m := _EMB_COLUMN.match(str(c)))]
    return [c for _, c in sorted(found)]


def feedback_rows(prod_df: pd.DataFrame) -> pd.DataFrame:
    """Prod rows that have both a target and a prediction, as strings."""
    if TARGET not in prod_df.columns or PREDICTION not in prod_df.columns:
        return pd.DataFrame({TARGET: pd.Series(dtype=str), PREDICTION: pd.Series(dtype=str)})
    rows = prod_df[[TARGET, PREDICTION]].dropna()
    rows = rows.astype(str)
    return rows[(rows[TARGET].str.strip() != "") & (rows[PREDICTION].str.strip() != "")]


class _PcaProjection:
    """Stands in for ``sklearn.manifold.TSNE`` inside Evidently's EmbeddingsDrift widget.

    EmbeddingsDrift always draws a 2-D density of both samples, and builds it with t-SNE on up to
    2,500 + 2,500 rows: 12 s for 200 rows and 44 s for 2,000 on our 2 cores, whatever drift
    method is asked for, while the drift score itself takes milliseconds. The projection only
    feeds that picture, so a linear PCA view is used instead.
    """

    def __init__(self, n_components: int = 2, **_: Any) -> None:
        self.n_components = n_components

    def fit_transform(self, x: Any) -> np.ndarray:
        data = np.asarray(x, dtype=float)
        k = max(1, min(self.n_components, *data.shape))
        out = np.zeros((data.shape[0], self.n_components))
        out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(data)
        # The widget runs a Gaussian KDE on each sample, which fails on a singular sample
        # (identical boxes, e.g. one image sent five times). A jitter far below the spread of
        # real embeddings keeps the picture drawable and changes no score.
        jitter = np.random.default_rng(0).normal(scale=1e-6, size=out.shape)
        return out + jitter


@contextmanager
def embedding_projection(kind: Literal["pca", "tsne"]) -> Iterator[None]:
    """Use ``kind`` for the 2-D view of EmbeddingsDrift while the context is open.

    Not thread-safe: it swaps a module attribute of Evidently for the duration.
    """
    from evidently.legacy.metrics.data_drift import embeddings_drift as module

    original = getattr(module, "TSNE", None)
    if kind == "tsne" or original is None:
        yield
        return
    setattr(module, "TSNE", _PcaProjection)  # noqa: B010 - the attribute is looked up at call time
    try:
        yield
    finally:
        setattr(module, "TSNE", original)  # noqa: B010


@contextmanager
def _expected_sklearn_warnings() -> Iterator[None]:
    # __background__ is never predicted and __missed__ never a target: precision / recall of
    # those classes are undefined by design, and sklearn says so on every call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        yield


def _drift_snapshot(
    ref_df: pd.DataFrame,
    prod_df: pd.DataFrame,
    columns: list[str],
    timestamp: datetime,
    metadata: dict[str, str],
    options: DriftOptions,
) -> Snapshot:
    definition = DataDefinition(numerical_columns=columns, embeddings={EMBEDDINGS_NAME: columns})
    report = Report(
        [
            RowCount(),
            DataDriftPreset(
                columns=columns,
                method=options.method,
                threshold=options.threshold,
                drift_share=options.drift_share,
            ),
            EmbeddingsDrift(
                embeddings_name=EMBEDDINGS_NAME,
                drift_method=DistanceDriftMethod(
                    dist="euclidean", threshold=options.embedding_distance_threshold
                ),
            ),
        ]
    )
    current = Dataset.from_pandas(prod_df[columns].astype(float), definition)
    reference = Dataset.from_pandas(ref_df[columns].astype(float), definition)
    with embedding_projection(options.projection):
        return report.run(
            current,
            reference,
            timestamp=timestamp,
            metadata={**metadata, "report": DRIFT_TAG},
            tags=[DRIFT_TAG],
            name=f"drift {timestamp:%Y-%m-%d %H:%M:%S}",
        )


def _classification_snapshot(
    rows: pd.DataFrame, timestamp: datetime, metadata: dict[str, str]
) -> Snapshot:
    data = rows.copy()
    with _expected_sklearn_warnings():
        data[BALANCED_ACCURACY_COLUMN] = float(
            balanced_accuracy_score(data[TARGET], data[PREDICTION])
        )
    definition = DataDefinition(
        categorical_columns=[TARGET, PREDICTION],
        numerical_columns=[BALANCED_ACCURACY_COLUMN],
        classification=[MulticlassClassification(target=TARGET, prediction_labels=PREDICTION)],
    )
    report = Report(
        [
            RowCount(),
            F1Score(),
            Precision(),
            Recall(),
            # The column is constant, so its max is the value exactly (a mean could be 1 ulp off).
            MaxValue(column=BALANCED_ACCURACY_COLUMN),
            F1ByLabel(),
            PrecisionByLabel(),
            RecallByLabel(),
        ]
    )
    with _expected_sklearn_warnings():
        return report.run(
            Dataset.from_pandas(data, definition),
            None,
            timestamp=timestamp,
            metadata={**metadata, "report": QUALITY_TAG},
            tags=[QUALITY_TAG],
            name=f"classification {timestamp:%Y-%m-%d %H:%M:%S}",
        )


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
        run.snapshots[DRIFT_TAG] = _drift_snapshot(
            ref_df.dropna(subset=columns), drift_rows, columns, timestamp, metadata, options
        )
    else:
        run.skipped.append(
            f"drift: {len(drift_rows)} prod rows with embeddings, need {options.min_rows}"
        )

    labelled = feedback_rows(prod_df)
    if len(labelled):
        run.snapshots[QUALITY_TAG] = _classification_snapshot(labelled, timestamp, metadata)
    else:
        run.skipped.append("classification: no prod rows with both target and prediction")

    for kind, snapshot in run.snapshots.items():
        run.values.update(headline_values(kind, snapshot.dict()))
    return run


def headline_values(kind: str, snapshot_dict: dict[str, Any]) -> dict[str, float]:
    """Headline numbers of one snapshot, from its ``Snapshot.dict()``.

    Args:
        kind: ``"drift"`` or ``"classification"`` (the snapshot's tag): RowCount means prod rows
            in one and feedback rows in the other.
        snapshot_dict: ``{"metrics": [{"config": {"type": ...}, "value": ...}, ...]}``.

    Returns:
        Keys ``prod_rows``, ``drift_share``, ``drifted_columns``, ``dataset_drift`` (1.0 when
        the share reaches the report's ``drift_share`` threshold, else 0.0), ``embedding_drift``
        (drift);
        ``feedback_rows``, ``f1``, ``precision``, ``recall``, ``balanced_accuracy``, and
        ``f1:<class>``, ``precision:<class>``, ``recall:<class>`` (classification).
    """
    scalars = {
        "F1Score": "f1",
        "Precision": "precision",
        "Recall": "recall",
        "EmbeddingsDrift": "embedding_drift",
        "RowCount": "prod_rows" if kind == DRIFT_TAG else "feedback_rows",
    }
    by_label = {"F1ByLabel": "f1", "PrecisionByLabel": "precision", "RecallByLabel": "recall"}
    values: dict[str, float] = {}
    for metric in snapshot_dict.get("metrics", []):
        config, value = metric.get("config", {}), metric.get("value")
        name = str(config.get("type", "")).rsplit(":", 1)[-1]
        if name in scalars:
            values[scalars[name]] = float(value)
        elif name in by_label:
            values.update({f"{by_label[name]}:{k}": float(v) for k, v in value.items()})
        elif name == "DriftedColumnsCount":
            values["drift_share"] = float(value["share"])
            values["drifted_columns"] = float(value["count"])
            # Evidently's dataset-drift rule, with the threshold the report was run with.
            threshold = float(config.get("drift_share", 0.5))
            values["dataset_drift"] = float(values["drift_share"] >= threshold)
        elif name == "MaxValue" and config.get("column") == BALANCED_ACCURACY_COLUMN:
            values["balanced_accuracy"] = float(value)
    return values


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

    Returns:
        Same keys as :attr:`RunResult.values`; empty when there is no such run.
    """
    by_run: dict[str, list[Any]] = {}
    newest: tuple[datetime, str] | None = None
    for snapshot_id in workspace.list_runs(project_id):
        model = workspace.get_run(project_id, snapshot_id)
        if model is None:
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
