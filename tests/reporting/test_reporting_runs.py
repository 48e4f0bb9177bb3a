"""A run's numbers, read back from the workspace, against direct scipy / scikit-learn figures."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DIM, SHIFTED, TIMESTAMP, StoredRun, make_prod, make_ref, write_csvs
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score

from reporting.config import Settings
from reporting.project import build_dashboard, dashboard_panels, get_or_create_project
from reporting.runs import build_run, read_latest_values
from reporting.service import prune_html, read_csv, run_once
from reporting.snapshots import DriftOptions, embedding_columns
from yoloserve.feedback.matching import BACKGROUND


def _sk(metric, prod: pd.DataFrame, **kwargs):
    with warnings.catch_warnings():  # zero-division warnings for the pseudo-classes, by design
        warnings.simplefilter("ignore")
        return metric(prod["target"], prod["prediction"], **kwargs)


@pytest.fixture(scope="module")
def latest(stored_run: StoredRun) -> dict[str, float]:
    from reporting.project import open_workspace

    workspace = open_workspace(stored_run.settings.workspace)
    return read_latest_values(workspace, stored_run.outcome.project_id)


def test_drift_share_matches_ks_per_column(stored_run: StoredRun, latest: dict[str, float]) -> None:
    columns = embedding_columns(stored_run.ref)
    drifted = [
        stats.ks_2samp(stored_run.ref[c], stored_run.prod[c]).pvalue <= 0.05 for c in columns
    ]
    assert latest["drift_share"] == pytest.approx(np.mean(drifted))
    assert latest["drifted_columns"] == sum(drifted)
    assert latest["dataset_drift"] == float(np.mean(drifted) >= 0.5)
    # The shifted half is found, and with these seeds no unshifted column is a false alarm.
    assert drifted == [True] * SHIFTED + [False] * (DIM - SHIFTED)


def test_embedding_drift_is_distance_between_mean_embeddings(
    stored_run: StoredRun, latest: dict[str, float]
) -> None:
    columns = embedding_columns(stored_run.ref)
    expected = np.linalg.norm(stored_run.prod[columns].mean() - stored_run.ref[columns].mean())
    assert latest["embedding_drift"] == pytest.approx(expected, rel=1e-9)


def test_quality_matches_sklearn_with_pseudo_classes_kept(
    stored_run: StoredRun, latest: dict[str, float]
) -> None:
    prod = stored_run.prod
    assert latest["feedback_rows"] == len(prod)
    metrics = (("f1", f1_score), ("precision", precision_score), ("recall", recall_score))
    for name, metric in metrics:
        assert latest[name] == pytest.approx(_sk(metric, prod, average="macro", zero_division=0))
    labels = sorted(set(prod["target"]))
    per_class = _sk(f1_score, prod, labels=labels, average=None, zero_division=0)
    for label, value in zip(labels, per_class, strict=True):
        assert latest[f"f1:{label}"] == pytest.approx(value)
    assert latest[f"recall:{BACKGROUND}"] == 0.0  # never predicted, by construction


def test_balanced_accuracy_is_sklearns_not_macro_recall(
    stored_run: StoredRun, latest: dict[str, float]
) -> None:
    expected = _sk(balanced_accuracy_score, stored_run.prod)
    assert latest["balanced_accuracy"] == expected
    # Why it is computed apart: macro recall also averages in __missed__ (no true rows).
    assert latest["recall"] < expected


def test_values_read_back_equal_the_run_values(
    stored_run: StoredRun, latest: dict[str, float]
) -> None:
    assert stored_run.outcome.run is not None
    assert latest == stored_run.outcome.run.values
    assert latest["prod_rows"] == len(stored_run.prod)


def test_each_snapshot_is_saved_as_timestamped_html(stored_run: StoredRun) -> None:
    names = sorted(p.name for p in stored_run.outcome.html)
    assert [n.split("_")[0] for n in names] == ["20260102-030405"] * 2
    assert [n.rsplit("_", 1)[1] for n in names] == ["classification.html", "drift.html"]
    for path in stored_run.outcome.html:
        assert path.parent == stored_run.settings.html_dir
        assert path.stat().st_size > 10_000


def test_latest_run_is_the_one_read_back(tmp_path: Path) -> None:
    ref, prod = make_ref(), make_prod(n=80, shift=0.0, seed=5)
    ref_path, prod_path = write_csvs(tmp_path / "data", ref, prod)
    settings = Settings(workspace=tmp_path / "ws", ref_csv=ref_path, prod_csv=prod_path)
    first = run_once(settings, timestamp=TIMESTAMP)
    write_csvs(tmp_path / "data", ref, make_prod(n=80, shift=2.0, seed=6))
    second = run_once(settings, timestamp=TIMESTAMP + timedelta(minutes=5))
    assert first.run is not None and second.run is not None
    assert first.project_id == second.project_id
    from reporting.project import open_workspace

    values = read_latest_values(open_workspace(settings.workspace), second.project_id)
    assert values == second.run.values
    assert values["drift_share"] > first.run.values["drift_share"]


def test_project_get_or_create_is_idempotent(stored_run: StoredRun) -> None:
    from reporting.project import open_workspace

    workspace = open_workspace(stored_run.settings.workspace)
    again = get_or_create_project(workspace, stored_run.settings.project_name)
    assert str(again.id) == stored_run.outcome.project_id
    assert [p.name for p in workspace.list_projects()] == [stored_run.settings.project_name]
    dashboard = workspace.get_dashboard(again.id)
    assert len(dashboard.panels) == len(dashboard_panels())
    listed = [panel_id for tab in dashboard.tabs for panel_id in tab.panels]
    assert sorted(map(str, listed)) == sorted(str(p.id) for p in dashboard.panels)


def test_dashboard_lists_every_panel_once() -> None:
    dashboard = build_dashboard()
    listed = [panel_id for tab in dashboard.tabs for panel_id in tab.panels]
    assert len(listed) == len(set(listed)) == len(dashboard.panels)
    assert [t.title for t in dashboard.tabs] == ["Drift", "Quality", "Reference"]


def test_run_once_with_empty_prod_is_a_no_op(tmp_path: Path) -> None:
    ref_path, prod_path = write_csvs(tmp_path, make_ref(), make_prod().iloc[0:0])
    settings = Settings(workspace=tmp_path / "ws", ref_csv=ref_path, prod_csv=prod_path)
    outcome = run_once(settings)
    assert outcome.run is None and "no production rows" in outcome.message
    assert not settings.workspace.exists()


def test_too_few_rows_skip_drift_but_not_quality() -> None:
    run = build_run(make_ref(), make_prod(n=3), TIMESTAMP, DriftOptions(min_rows=5))
    assert list(run.snapshots) == ["classification"]
    assert run.skipped == ["drift: 3 prod rows with embeddings, need 5"]
    assert "drift_share" not in run.values and run.values["feedback_rows"] == 3


def test_prod_from_another_embedder_is_refused() -> None:
    with pytest.raises(ValueError, match="different embedders"):
        build_run(make_ref(dim=8), make_prod(dim=4), TIMESTAMP)


def test_read_csv_keeps_labels_as_text(tmp_path: Path) -> None:
    path = tmp_path / "prod.csv"
    path.write_text("emb_0,target,prediction,model_version\n0.5,None,1,2\n")
    frame = read_csv(path)
    assert frame.loc[0, "prediction"] == "1" and frame.loc[0, "model_version"] == "2"


@pytest.mark.parametrize(("keep", "left"), [(0, 6), (1, 2), (2, 4), (5, 6)])
def test_prune_html_keeps_the_newest_per_kind(tmp_path: Path, keep: int, left: int) -> None:
    for stamp in ("20260101-000000", "20260102-000000", "20260103-000000"):
        for kind in ("drift", "classification"):
            (tmp_path / f"{stamp}_abcd1234_{kind}.html").write_text("x")
    prune_html(tmp_path, keep)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert len(remaining) == left
    if keep == 1:
        assert all(name.startswith("20260103") for name in remaining)
