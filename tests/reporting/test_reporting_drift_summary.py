"""Each run with a drift report leaves its headline in ``drift_summary.json`` for the gateway."""

from __future__ import annotations

from pathlib import Path

from tests.reporting.conftest import TIMESTAMP, StoredRun, make_prod, make_ref, write_csvs
from yoloserve.drift_summary import FILE_NAME, read_summary


def test_a_run_writes_its_drift_summary_beside_the_prod_csv(stored_run: StoredRun) -> None:
    run = stored_run.outcome.run
    assert run is not None
    path = stored_run.settings.prod_csv.parent / FILE_NAME
    assert stored_run.settings.drift_summary_path == path

    summary = read_summary(path)

    assert summary is not None
    assert summary.run_id == run.run_id
    assert summary.timestamp == TIMESTAMP.timestamp()
    assert summary.drift_share == run.values["drift_share"]
    assert summary.dataset_drift is (run.values["dataset_drift"] == 1.0)
    assert summary.embedding_drift == run.values["embedding_drift"]
    assert summary.prod_rows == len(stored_run.prod)


def test_a_run_without_a_drift_report_keeps_the_previous_summary(tmp_path: Path) -> None:
    from reporting.config import Settings
    from reporting.service import run_once

    ref_path, prod_path = write_csvs(tmp_path / "data", make_ref(), make_prod(n=3))
    settings = Settings(
        workspace=tmp_path / "ws", ref_csv=ref_path, prod_csv=prod_path, min_rows=5,
        summary_path=tmp_path / "summary.json",
    )
    settings.drift_summary_path.write_text("previous")

    outcome = run_once(settings, timestamp=TIMESTAMP)

    assert outcome.run is not None and "drift" not in outcome.run.snapshots
    assert settings.drift_summary_path.read_text() == "previous"
