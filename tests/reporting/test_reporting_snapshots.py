"""The two reports of a run and their headline numbers (reporting.snapshots), without Evidently
running: column order, feedback rows, and how numbers are read out of a snapshot."""

from __future__ import annotations

import pandas as pd
import pytest

from reporting.project import BALANCED_ACCURACY_COLUMN
from reporting.snapshots import embedding_columns, feedback_rows, headline_values


def test_embedding_columns_are_in_index_order() -> None:
    frame = pd.DataFrame(columns=["emb_10", "target", "emb_2", "emb_0", "embx"])
    assert embedding_columns(frame) == ["emb_0", "emb_2", "emb_10"]





def test_feedback_rows_need_both_a_target_and_a_prediction() -> None:
    prod = pd.DataFrame({"target": ["circle", None, " ", "square"],
                         "prediction": ["circle", "square", "circle", None]})
    assert feedback_rows(prod).to_dict("records") == [{"target": "circle", "prediction": "circle"}]
    assert feedback_rows(pd.DataFrame({"emb_0": [0.1]})).empty


def _metric(kind: str, value: object, **config: object) -> dict[str, object]:
    return {"config": {"type": f"evidently:metric_v2:{kind}", **config}, "value": value}


@pytest.mark.parametrize(
    ("kind", "metrics", "expected"),
    [
        ("drift", [_metric("RowCount", 40), _metric("EmbeddingsDrift", 2.5)],
         {"prod_rows": 40.0, "embedding_drift": 2.5}),
        ("drift", [_metric("DriftedColumnsCount", {"share": 0.5, "count": 4}, drift_share=0.5)],
         {"drift_share": 0.5, "drifted_columns": 4.0, "dataset_drift": 1.0}),
        ("drift", [_metric("DriftedColumnsCount", {"share": 0.25, "count": 2}, drift_share=0.3)],
         {"drift_share": 0.25, "drifted_columns": 2.0, "dataset_drift": 0.0}),
        ("classification", [_metric("RowCount", 7), _metric("F1Score", 0.5),
                            _metric("RecallByLabel", {"circle": 1.0, "__missed__": 0.0}),
                            _metric("MaxValue", 0.75, column=BALANCED_ACCURACY_COLUMN),
                            _metric("MaxValue", 9.0, column="other")],
         {"feedback_rows": 7.0, "f1": 0.5, "recall:circle": 1.0, "recall:__missed__": 0.0,
          "balanced_accuracy": 0.75}),
    ],
)
def test_headline_values(kind: str, metrics: list, expected: dict[str, float]) -> None:
    assert headline_values(kind, {"metrics": metrics}) == expected
