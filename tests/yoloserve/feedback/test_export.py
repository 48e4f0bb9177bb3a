"""prod_data.csv as an export of the store: same columns, every committed row exactly once, also
after a SIGKILL mid-export (a real process); an older release's CSV and journal imported once."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yoloserve.errors import CsvSchemaError
from yoloserve.feedback.export import ProdCsvExporter, open_exporter
from yoloserve.feedback.ledger import FeedbackLedger, KeyClaim, ProdRow
from yoloserve.feedback.legacy import JOURNAL_NAME
from yoloserve.feedback.store import prod_header
from yoloserve.store.engine import Store


def rows(feedback_id: str, n: int, start: int = 0) -> list[ProdRow]:
    return [ProdRow((0.1, -1.25), "circle", "square", "2024-01-01T00:00:00.000+00:00",
                    feedback_id, "req", "3", f"feedback/images/{start + i}.png")
            for i in range(n)]


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    return header, body


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.sqlite(tmp_path / "yoloserve.db")


def test_rows_are_appended_in_order_with_the_prod_columns(store: Store, tmp_path: Path) -> None:
    ledger, path = FeedbackLedger(store), tmp_path / "prod_data.csv"
    exporter = ProdCsvExporter(store, path)
    assert exporter.export() == 0 and not path.exists(), "no rows: no file"
    ledger.commit(rows("a", 2))
    assert exporter.export() == 2
    ledger.commit(rows("b", 3))
    assert exporter.export() == 3 and exporter.export() == 0

    header, body = read(path)
    assert header == prod_header(2)
    assert [r[-4] for r in body] == ["a", "a", "b", "b", "b"]
    # float32 text, as the gateway always wrote it
    assert body[0][:2] == ["0.1", "-1.25"]


def test_a_missing_or_shortened_file_is_rebuilt(store: Store, tmp_path: Path) -> None:
    ledger, path = FeedbackLedger(store), tmp_path / "prod_data.csv"
    exporter = ProdCsvExporter(store, path)
    ledger.commit(rows("a", 4))
    exporter.export()
    full = path.read_bytes()
    path.write_bytes(full[:30])
    ledger.commit(rows("b", 1))
    exporter.export()
    assert len(read(path)[1]) == 5
    path.unlink()
    exporter.export()
    assert len(read(path)[1]) == 5


def test_another_header_is_never_touched(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    path.write_text("emb_0,target\n0.5,circle\n")
    FeedbackLedger(store).commit(rows("a", 1))
    with pytest.raises(CsvSchemaError):
        ProdCsvExporter(store, path).export()
    assert path.read_text() == "emb_0,target\n0.5,circle\n"


_KILLED_EXPORT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from yoloserve.feedback import export
    from yoloserve.store.engine import Store

    store, path, where = Store(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    exporter = export.ProdCsvExporter(store, path)
    if where == "before-watermark":
        def _record(last_id, size):
            if last_id:
                os.kill(os.getpid(), signal.SIGKILL)
        exporter._record = _record
    else:
        original = exporter._append
        def _append(size, header, payload):
            original(size, header, payload[: len(payload) // 2])  # a torn row, fsynced
            os.kill(os.getpid(), signal.SIGKILL)
        exporter._append = _append
    export._BATCH = 3
    exporter.export()
""")


@pytest.mark.parametrize("where", ["before-watermark", "mid-write"])
def test_every_committed_row_is_exported_once_after_a_sigkill(
    store: Store, tmp_path: Path, where: str
) -> None:
    ledger, path = FeedbackLedger(store), tmp_path / "prod_data.csv"
    ledger.commit(rows("a", 4))
    ProdCsvExporter(store, path).export()
    for k in range(5):
        ledger.commit(rows(f"b{k}", 2, start=10 * k))

    killed = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, store.url, str(path), where],
                            capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert path.stat().st_size > 0
    ProdCsvExporter(store, path).export()

    header, body = read(path)
    assert header == prod_header(2)
    assert [(r[-4], r[-1]) for r in body] == [(r.feedback_id, r.image) for r in (
        rows("a", 4) + [row for k in range(5) for row in rows(f"b{k}", 2, start=10 * k)])]


def _legacy_csv(path: Path) -> bytes:
    lines = [",".join(prod_header(2))]
    lines += [f"0.5,0.25,circle,square,t,plain,req,3,feedback/images/p{i}.png" for i in range(2)]
    lines += [f"0.5,0.25,square,__missed__,t,idem-{'a' * 32},req,3,x{i}.png" for i in range(3)]
    lines += [f"0.5,0.25,square,__missed__,t,idem-{'b' * 32},req,2,y.png"]
    data = ("\n".join(lines) + "\n").encode() + b"0.5,0.2"  # a torn row, never acknowledged
    path.write_bytes(data)
    return data


def test_an_older_csv_and_journal_are_imported_once(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    data = _legacy_csv(path)
    answer = {"feedback_id": f"idem-{'a' * 32}", "fingerprint": "f", "model_version": "3",
              "body": {"feedback_id": f"idem-{'a' * 32}", "rows_written": 3,
                       "prod_rows_total": 5, "retrain": {"triggered": False, "job_id": None,
                                                         "next_at_rows": 50}},
              "rows_written": 3, "prod_rows_total": 5}
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(answer) + "\n{torn")

    exporter = open_exporter(store, tmp_path)
    ledger = FeedbackLedger(store)
    assert ledger.total() == 6
    answered, unanswered = ledger.find("a" * 32), ledger.find("b" * 32)
    assert answered is not None and answered.body == answer["body"]
    assert answered.fingerprint == "f"
    assert unanswered is not None and unanswered.body is None
    assert (unanswered.rows_written, unanswered.prod_rows_total) == (1, 6)
    assert (tmp_path / f"{JOURNAL_NAME}.migrated").exists()

    assert ledger.commit(rows("new", 2)).prod_rows_total == 8
    assert exporter.export() == 2
    after = path.read_bytes()
    assert after.startswith(data[: data.rindex(b"\n") + 1]), "the user's rows stay as they were"
    assert [r[-4] for r in read(path)[1]][-3:] == [f"idem-{'b' * 32}", "new", "new"]
    # A second start imports nothing again.
    open_exporter(store, tmp_path)
    assert ledger.total() == 8
    assert exporter.export() == 0 and path.read_bytes() == after


def test_the_import_keeps_replay_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    store = Store(postgres_url)
    _legacy_csv(tmp_path / "prod_data.csv")
    open_exporter(store, tmp_path)
    ledger = FeedbackLedger(store)
    assert ledger.total() == 6
    again = ledger.commit(rows(f"idem-{'b' * 32}", 1),
                          KeyClaim("b" * 32, f"idem-{'b' * 32}", None), "2")
    assert again.existing is not None and again.rows_written == 0
