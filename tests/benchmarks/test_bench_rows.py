"""benchmarks.rows: acknowledged feedback rows counted back from the CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.rows import lost_rows, rows_by_column


def test_rows_by_column_and_lost_rows(tmp_path: Path) -> None:
    path = tmp_path / "prod.csv"
    assert rows_by_column(path, "feedback_id") == Counter()
    path.write_text("emb_0,feedback_id\n0.1,a\n0.2,a\n0.3,b\n")
    found = rows_by_column(path, "feedback_id")
    assert found == Counter({"a": 2, "b": 1})
    # c was acknowledged and is missing, b lost one of its two rows; a is complete.
    assert lost_rows({"a": 2, "b": 2, "c": 1}, found) == {"b": 1, "c": 1}
    assert lost_rows({"a": 1}, found) == {}  # more rows than acknowledged is no loss
