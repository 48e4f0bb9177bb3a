"""The drift summary file the reporting watcher writes and the gateway reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloserve.drift_summary import DriftSummary, read_summary, write_summary


def test_written_summary_reads_back_equal(tmp_path: Path) -> None:
    summary = DriftSummary("r1", 1_700_000_000.5, 42, 0.25, False, 1.5)
    path = tmp_path / "sub" / "drift_summary.json"

    write_summary(path, summary)

    assert read_summary(path) == summary
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_summary(tmp_path / "none.json") is None


@pytest.mark.parametrize("text", ["{half", "[]", '{"run_id": "r"}', '{"drift_share": 1}'])
def test_a_file_that_is_no_summary_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        read_summary(path)
