"""First start on an older release's data: its ``prod_data.csv`` and journal into the store.

Before the store, feedback rows lived only in ``data/prod_data.csv`` and the first answers of
keyed feedback in ``data/prod_data.idempotency.jsonl``. On the first start against a store
without feedback rows, :func:`import_legacy` copies the CSV's complete rows in their order
(ids 1..n), every journaled answer (a retry still gets it, byte for byte) and keyed rows whose
answer never reached the journal (``stored``: a retry gets the answer they imply), and records
the export's watermark at the end of those rows, so the exporter appends after them. All in one
write transaction under the feedback lock: concurrent starters import once. The journal is then
renamed ``<name>.migrated``; the CSV stays (it is the export).

Example:
    >>> import_legacy(Store("sqlite:////tmp/example-legacy.db"), Path("/tmp/none.csv"),
    ...               Path("/tmp/none.jsonl"))
    0
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from yoloserve.errors import CsvSchemaError
from yoloserve.feedback.ledger import LOCK, ProdRow
from yoloserve.feedback.store import PROD_EXTRA_COLUMNS, prod_header, read_header
from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackExportRow, FeedbackRowRecord, IdempotencyKeyRow

logger = logging.getLogger("yoloserve.feedback.legacy")

JOURNAL_NAME = "prod_data.idempotency.jsonl"
ID_PREFIX = "idem-"


def is_prod_header(header: list[str] | None) -> bool:
    """Whether ``header`` is ``prod_header(dim)`` for some dim."""
    if not header or len(header) <= len(PROD_EXTRA_COLUMNS) + 1:
        return False
    return header == prod_header(len(header) - len(PROD_EXTRA_COLUMNS) - 1)


def _read_rows(path: Path) -> tuple[list[ProdRow], int]:
    """The CSV's complete rows and the byte offset just after the last one."""
    rows: list[ProdRow] = []
    with open(path, "rb") as f:
        header = next(csv.reader([f.readline().decode().rstrip("\r\n")]))
        dim = len(header) - len(PROD_EXTRA_COLUMNS) - 1
        end = f.tell()
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a row torn by a crash: never acknowledged
            values = next(csv.reader([raw.decode().rstrip("\r\n")]))
            embedding = tuple(float(v) for v in values[:dim])
            rest = values[dim:]
            rows.append(ProdRow(embedding, *rest))
            end += len(raw)
    return rows, end


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return answers
    for line in lines:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            answer = json.loads(line)
            answers[str(answer["feedback_id"])] = answer  # a torn line was never answered
    return answers


def _keys(rows: list[ProdRow], answers: dict[str, dict[str, Any]],
          now: datetime) -> list[dict[str, Any]]:
    keys: dict[str, dict[str, Any]] = {}
    for position, row in enumerate(rows, start=1):
        if row.feedback_id.startswith(ID_PREFIX):
            entry = keys.setdefault(row.feedback_id, {
                "key_hash": row.feedback_id[len(ID_PREFIX):], "feedback_id": row.feedback_id,
                "fingerprint": None, "status": "stored", "rows_written": 0,
                "model_version": row.model_version, "response": None, "created_at": now})
            entry["rows_written"] += 1
            entry["prod_rows_total"] = position
    for feedback_id, answer in answers.items():
        if not feedback_id.startswith(ID_PREFIX) or answer.get("body") is None:
            continue
        keys[feedback_id] = {
            "key_hash": feedback_id[len(ID_PREFIX):], "feedback_id": feedback_id,
            "fingerprint": answer.get("fingerprint"), "status": "answered",
            "rows_written": int(answer["rows_written"]),
            "prod_rows_total": int(answer["prod_rows_total"]),
            "model_version": str(answer["model_version"]), "response": answer["body"],
            "created_at": now}
    return list(keys.values())


def import_legacy(store: Store, csv_path: Path, journal: Path,
                  name: str = "prod_data.csv") -> int:
    """Import an older release's CSV rows and journal into a store without feedback rows.

    Args:
        store: the store.
        csv_path: ``prod_data.csv``; nothing happens when it is missing or not a
            ``prod_header`` file (a file with other columns is left for the caller to refuse).
        journal: ``prod_data.idempotency.jsonl`` beside it, if any.
        name: the export watermark's name.

    Returns:
        Rows imported.
    """
    with store.read() as session:
        if session.get(FeedbackExportRow, name) is not None:
            return 0
    try:
        header = read_header(csv_path)
    except CsvSchemaError:  # no complete header line: nothing was ever acknowledged in it
        return 0
    if not is_prod_header(header):
        return 0
    rows, end = _read_rows(csv_path)
    now = datetime.now(UTC)
    with store.write(lock=LOCK) as session:
        if session.get(FeedbackExportRow, name) is not None:
            return 0  # another starter imported it meanwhile
        if session.scalar(select(FeedbackRowRecord.id).limit(1)) is not None:
            return 0  # the store has rows of its own: the exporter sets this file aside
        if rows:
            session.execute(insert(FeedbackRowRecord),
                            [row.record(i, now) for i, row in enumerate(rows, start=1)])
        keys = _keys(rows, _read_journal(journal), now)
        if keys:
            session.execute(insert(IdempotencyKeyRow), keys)
        session.add(FeedbackExportRow(name=name, last_id=len(rows), size=end, updated_at=now))
    with contextlib.suppress(FileNotFoundError):
        journal.rename(journal.with_name(journal.name + ".migrated"))
    logger.warning("imported %d feedback rows and %d keys from %s into the store",
                   len(rows), len(keys), csv_path)
    return len(rows)
