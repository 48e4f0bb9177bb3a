"""Append-only, locked, fixed-header CSV files (yoloserve.feedback.store)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from yoloserve.errors import YoloServeError
from yoloserve.feedback import store as csv_store
from yoloserve.feedback.store import (
    CsvSchemaError,
    CsvStore,
    count_rows,
    embedding_fields,
    prod_header,
    ref_header,
)

HEADER = ["emb_0", "emb_1", "target"]


def _row(target: str, a: object = 0.5, b: object = -1.0) -> dict[str, object]:
    return {"emb_0": a, "emb_1": b, "target": target}


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_headers() -> None:
    assert ref_header(3) == ["emb_0", "emb_1", "emb_2", "target"]
    assert prod_header(2) == ["emb_0", "emb_1", "target", "prediction", "timestamp",
                              "feedback_id", "request_id", "model_version", "image"]
    with pytest.raises(ValueError):
        ref_header(0)


def test_append_writes_header_once_and_returns_totals(tmp_path: Path) -> None:
    store = CsvStore(tmp_path / "sub" / "ref.csv", HEADER)
    assert store.count() == 0
    assert store.append([_row("circle"), _row("square")]) == 2
    assert store.append([_row("triangle")]) == 3
    assert store.append([]) == 3
    assert _read(store.path) == [HEADER, ["0.5", "-1.0", "circle"], ["0.5", "-1.0", "square"],
                                 ["0.5", "-1.0", "triangle"]]
    assert CsvStore(store.path, HEADER).count() == 3


def test_empty_append_creates_the_file_with_its_header(tmp_path: Path) -> None:
    store = CsvStore(tmp_path / "p.csv", HEADER)
    assert store.append([]) == 0
    assert store.path.read_text() == "emb_0,emb_1,target\n"


def test_values_are_written_exactly(tmp_path: Path) -> None:
    vec = np.array([0.1, -3.4028235e38], dtype=np.float32)
    store = CsvStore(tmp_path / "v.csv", HEADER)
    store.append([{**embedding_fields(vec), "target": 'a "quoted", name'}])
    store.append([{"emb_0": None, "emb_1": 7, "target": ""}])
    rows = _read(store.path)
    assert rows[1][:2] == ["0.1", "-3.4028235e+38"]
    assert np.array(rows[1][:2], dtype=np.float32).tobytes() == vec.tobytes()
    assert rows[1][2] == 'a "quoted", name'
    assert rows[2] == ["", "7", ""]


def test_header_mismatch_is_refused_and_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "prod.csv"
    CsvStore(path, HEADER).append([_row("circle")])
    before = path.read_bytes()
    other = CsvStore(path, ["emb_0", "target"])
    with pytest.raises(CsvSchemaError, match="another header") as info:
        other.append([{"emb_0": 1.0, "target": "x"}])
    assert isinstance(info.value, YoloServeError)
    assert info.value.code == "csv_schema_mismatch"
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "row",
    [
        {"emb_0": 1.0, "target": "x"},  # missing column
        {"emb_0": 1.0, "emb_1": 2.0, "target": "x", "extra": 1},  # unknown column
        {"emb_0": 1.0, "emb_1": 2.0, "target": "two\nlines"},
        {"emb_0": 1.0, "emb_1": 2.0, "target": "cr\r"},
    ],
)
def test_bad_rows_are_refused_before_writing(tmp_path: Path, row: dict[str, object]) -> None:
    store = CsvStore(tmp_path / "r.csv", HEADER)
    store.append([_row("ok")])
    before = store.path.read_bytes()
    with pytest.raises(CsvSchemaError):
        store.append([_row("fine"), row])
    assert store.path.read_bytes() == before


def test_unsupported_value_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        CsvStore(tmp_path / "t.csv", HEADER).append([_row("x", a=[1, 2])])


def test_invalid_header() -> None:
    with pytest.raises(ValueError):
        CsvStore(Path("x.csv"), ["a", "a"])
    with pytest.raises(ValueError):
        CsvStore(Path("x.csv"), [])


def test_a_foreign_file_without_newline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"something,else")
    with pytest.raises(CsvSchemaError):
        CsvStore(path, HEADER).append([_row("x")])
    assert path.read_bytes() == b"something,else"


def test_count_follows_other_writers_and_replaced_files(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    reader, writer = CsvStore(path, HEADER), CsvStore(path, HEADER)
    writer.append([_row("a")])
    assert reader.count() == 1
    writer.append([_row("b"), _row("c")])
    assert reader.count() == 3  # incremental from the cached line boundary
    path.rename(tmp_path / "aside.csv")
    assert reader.count() == 0
    writer.append([_row("d")])
    assert reader.count() == 1


def test_count_rows_without_a_store_counts_what_the_store_counts(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    assert count_rows(path) == 0, "missing file"
    store = CsvStore(path, HEADER)
    store.append([_row("a"), _row("b")])
    assert count_rows(path) == store.count() == 2
    with open(path, "ab") as f:
        f.write(b"0.25,0.75,half")  # being written: not acknowledged yet
    assert count_rows(path) == store.count() == 2
    path.write_bytes(b"emb_0,em")  # only a torn header
    assert count_rows(path) == 0


def test_append_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = csv_store.os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(csv_store.os, "fsync", recording_fsync)
    CsvStore(tmp_path / "s.csv", HEADER).append([_row("x")])
    assert len(synced) == 2  # the file, then (new file) its folder
