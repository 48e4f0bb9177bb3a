"""The two Evidently reports of a monitoring run, and the headline numbers read from them.

A run (``reporting.runs``) is two reports taken at one timestamp:

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
    >>> snapshot = drift_snapshot(ref_df, prod_df, embedding_columns(ref_df), now, {},
    ...                           DriftOptions())  # doctest: +SKIP
    >>> headline_values("drift", snapshot.dict())["drift_share"]  # doctest: +SKIP
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

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
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import balanced_accuracy_score

from reporting.project import BALANCED_ACCURACY_COLUMN, DRIFT_TAG, QUALITY_TAG
from reporting.projection import embedding_projection

TARGET = "target"
PREDICTION = "prediction"
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


@contextmanager
def _expected_sklearn_warnings() -> Iterator[None]:
    # __background__ is never predicted and __missed__ never a target: precision / recall of
    # those classes are undefined by design, and sklearn says so on every call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        yield


def drift_snapshot(
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


def classification_snapshot(
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

