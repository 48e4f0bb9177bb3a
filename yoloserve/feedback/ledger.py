"""Feedback rows and idempotency keys in the store, committed together (group commit).

A feedback's rows and, for a named feedback (an ``Idempotency-Key``, or a prediction's
``request_id`` with the exact content), its key commit together in one ``store.write()``
transaction under the ``feedback`` lock, so either both are stored or neither is, on every
replica at once. Feedbacks that arrive while a commit runs wait for it and then share the next
transaction (one fsync for all of them); if that transaction fails, each is retried alone, so
one bad feedback fails only itself.

* ``feedback_rows.id`` is the row's position, the highest id + 1 inside that transaction: ids
  have no gaps, commit in id order (the CSV export, ``yoloserve.feedback.export``, appends in id
  order and never misses a row committed late) and the highest id is the row total every
  replica agrees on (the retrain trigger's multiples of k, ``prod_rows_total``).
* ``idempotency_keys.key_hash`` is the primary key, i.e. the unique constraint: of two requests
  with one key, one stores; the other finds the key (or loses the insert with an
  ``IntegrityError``) and gets the first feedback's answer. The key is ``stored`` with the row
  counts in the transaction and ``answered`` with its response body once the answer is known:
  in the same transaction when the caller can tell it there (``settle``: no review item to
  close, no retrain to start, which is most feedback), else after the commit by
  :meth:`FeedbackLedger.answer`, a compare-and-set, so every attempt ends with the same body.

Keys older than ``retention_s`` (7 days) are pruned by a writer now and then; a retry after
that is new feedback.

Example:
    >>> ledger = FeedbackLedger(Store("sqlite:////tmp/example-ledger.db"))
    >>> ledger.total() >= 0
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackRowRecord, IdempotencyKeyRow

LOCK = "feedback"
"""The store lock every writer of feedback rows holds (the import and the ledger)."""
RETENTION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ProdRow:
    """One row of ``prod_data.csv``: a box's embedding, ground truth, prediction, bookkeeping."""

    embedding: tuple[float, ...]
    target: str
    prediction: str
    timestamp: str
    feedback_id: str
    request_id: str
    model_version: str
    image: str

    def csv_values(self) -> list[str]:
        """The CSV fields in ``prod_header`` order; floats as the shortest float32 text, the
        characters the gateway always wrote."""
        return [*(str(np.float32(v)) for v in self.embedding), self.target, self.prediction,
                self.timestamp, self.feedback_id, self.request_id, self.model_version, self.image]

    def record(self, row_id: int, now: datetime) -> dict[str, Any]:
        """The ``feedback_rows`` columns of this row at position ``row_id``."""
        return {"id": row_id, "feedback_id": self.feedback_id,
                "embedding": [float(v) for v in self.embedding], "target": self.target,
                "prediction": self.prediction, "timestamp": self.timestamp,
                "request_id": self.request_id, "model_version": self.model_version,
                "image": self.image, "created_at": now}


def row_of(record: FeedbackRowRecord | Row[Any]) -> ProdRow:
    """The ``ProdRow`` of a stored record."""
    return ProdRow(tuple(record.embedding), record.target, record.prediction, record.timestamp,
                   record.feedback_id, record.request_id, record.model_version, record.image)


@dataclass(frozen=True)
class KeyClaim:
    """The name a feedback is stored under (``gateway.idempotency``) and what it must repeat.

    Attributes:
        key_hash: the key's hash (``feedback_id`` without its ``idem-`` prefix).
        feedback_id: the id of its rows and image files.
        fingerprint: the request's content hash; a retry with another one is a reuse.
    """

    key_hash: str
    feedback_id: str
    fingerprint: str | None


@dataclass(frozen=True)
class StoredAnswer:
    """A named feedback as the store keeps it.

    Attributes:
        body: the response body (``FeedbackResponse``), None while only ``stored``.
        rows_written: its rows; ``prod_rows_total``: the row total right after them.
    """

    feedback_id: str
    fingerprint: str | None
    model_version: str
    body: dict[str, Any] | None
    rows_written: int
    prod_rows_total: int
    created_at: datetime | None = None

    def age_s(self) -> float:
        """Seconds since the key was stored (0 when unknown)."""
        if self.created_at is None:
            return 0.0
        created = self.created_at
        if created.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
            created = created.replace(tzinfo=UTC)
        return (datetime.now(UTC) - created).total_seconds()


@dataclass(frozen=True)
class Committed:
    """What :meth:`FeedbackLedger.commit` did: stored the rows, or found the key stored."""

    rows_written: int
    prod_rows_total: int
    existing: StoredAnswer | None = None
    body: dict[str, Any] | None = None


Settle = Callable[[int, int], "dict[str, Any] | None"]
"""The answer's body of a feedback given (rows written, row total after them), or None."""


@dataclass
class _Pending:
    """A feedback waiting for its turn in a group commit, then its outcome."""

    rows: tuple[ProdRow, ...]
    claim: KeyClaim | None
    model_version: str
    settle: Settle | None
    outcome: Committed | Exception | None = None

    def result(self) -> Committed:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome


def _answer(row: IdempotencyKeyRow | Row[Any]) -> StoredAnswer:
    return StoredAnswer(row.feedback_id, row.fingerprint, row.model_version, row.response,
                        row.rows_written, row.prod_rows_total, row.created_at)


class FeedbackLedger:
    """Writes feedback rows and keys to the store; reads totals and stored answers.

    Args:
        store: the store.
        retention_s: how long a key is remembered.
        prune_every_s: how often (at most) a writer deletes expired keys.
        clock: wall-clock seconds (tests pass their own).
    """

    def __init__(self, store: Store, *, retention_s: float = RETENTION_S,
                 prune_every_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retention_s, self.prune_every_s, self.clock = retention_s, prune_every_s, clock
        self._pruned_at = float("-inf")
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False

    def total(self) -> int:
        """Feedback rows stored so far (the highest position)."""
        with self.store.read() as session:
            return int(session.scalar(select(func.max(FeedbackRowRecord.id))) or 0)

    def find(self, key_hash: str) -> StoredAnswer | None:
        """The feedback stored under ``key_hash``, or None (every feedback asks: Core, not ORM)."""
        with self.store.connect() as connection:
            row = connection.execute(select(*IdempotencyKeyRow.__table__.columns)
                                     .where(IdempotencyKeyRow.key_hash == key_hash)).first()
        return None if row is None else _answer(row)

    def commit(self, rows: Sequence[ProdRow], claim: KeyClaim | None = None,
               model_version: str = "", settle: Settle | None = None) -> Committed:
        """Store ``rows`` (and ``claim``'s key) in one transaction, unless the key is stored.

        Concurrent calls of this process share transactions (group commit): the first caller
        to find no commit running writes every feedback queued so far in one transaction, so
        32 writers pay for a few fsyncs, not 32. Ids stay positions: each feedback's rows get
        consecutive ids after those of the feedbacks before it in the batch.

        Args:
            rows: the feedback's rows, in order.
            claim: the key to store with them; None for unnamed feedback.
            model_version: the version that predicted (kept with the key for a replay).
            settle: the answer's body given (rows written, total after them), when it can be
                known inside the transaction (no side effect left to decide); the key is then
                stored ``answered`` with it and no second transaction is needed. It returns
                None when the answer must wait (:meth:`answer` records it later).

        Returns:
            The rows written and the total after them (and the body ``settle`` gave); or,
            when the key was stored already (by an earlier attempt or a concurrent one),
            nothing written and that answer.
        """
        pending = _Pending(tuple(rows), claim, model_version, settle)
        with self._turn:
            self._queue.append(pending)
            while pending.outcome is None and self._committing:
                self._turn.wait()
            if pending.outcome is not None:
                return pending.result()
            self._committing = True
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(batch)
        finally:
            with self._turn:
                for waiting in batch:  # interrupted (SystemExit, ...): nobody waits for ever
                    if waiting.outcome is None:
                        waiting.outcome = RuntimeError("the commit was interrupted")
                self._committing = False
                self._turn.notify_all()
        return pending.result()

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Commit ``batch`` in one transaction; where that fails, each feedback alone (one bad
        feedback fails alone, not the ones that shared its transaction)."""
        try:
            self._commit_together(batch)
            return
        except Exception as exc:  # noqa: BLE001 - every caller gets its own outcome below
            if len(batch) == 1:
                batch[0].outcome = exc
                return
        for pending in batch:
            try:
                self._commit_together([pending])
            except Exception as exc:  # noqa: BLE001
                pending.outcome = exc

    def _commit_together(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._write(batch)
        except IntegrityError:
            # Two transactions may both miss a key before either commits only where the store
            # does not serialise them (another lock name): the constraint decides. Alone, the
            # feedback whose key won elsewhere gets that answer.
            if len(batch) > 1:
                raise
            claim = batch[0].claim
            found = self.find(claim.key_hash) if claim is not None else None
            if found is None:
                raise
            outcomes = [Committed(0, found.prod_rows_total, found)]
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.outcome = outcome

    def _write(self, batch: list[_Pending]) -> list[Committed]:
        now = datetime.now(UTC)
        keys = [p.claim.key_hash for p in batch if p.claim is not None]
        outcomes: list[Committed] = []
        with self.store.write(lock=LOCK) as session:
            stored: dict[str, StoredAnswer] = {}
            if keys:
                stored = {row.key_hash: _answer(row) for row in session.scalars(
                    select(IdempotencyKeyRow).where(IdempotencyKeyRow.key_hash.in_(keys)))}
            total = int(session.scalar(select(func.max(FeedbackRowRecord.id))) or 0)
            records: list[dict[str, Any]] = []
            key_records: list[dict[str, Any]] = []
            for p in batch:
                found = stored.get(p.claim.key_hash) if p.claim is not None else None
                if found is not None:  # stored before, or earlier in this very batch
                    outcomes.append(Committed(0, found.prod_rows_total, found))
                    continue
                records.extend(row.record(total + 1 + i, now) for i, row in enumerate(p.rows))
                total += len(p.rows)
                body = p.settle(len(p.rows), total) if p.settle is not None else None
                outcomes.append(Committed(len(p.rows), total, body=body))
                if p.claim is not None:
                    key = {"key_hash": p.claim.key_hash, "feedback_id": p.claim.feedback_id,
                           "fingerprint": p.claim.fingerprint,
                           "status": "stored" if body is None else "answered",
                           "rows_written": len(p.rows), "prod_rows_total": total,
                           "model_version": p.model_version, "response": body,
                           "created_at": now}
                    key_records.append(key)
                    stored[p.claim.key_hash] = StoredAnswer(
                        p.claim.feedback_id, p.claim.fingerprint, p.model_version, body,
                        len(p.rows), total, now)
            if records:
                session.execute(insert(FeedbackRowRecord), records)
            if key_records:
                session.execute(insert(IdempotencyKeyRow), key_records)
            if self.clock() - self._pruned_at >= self.prune_every_s:
                self._pruned_at = self.clock()
                cutoff = now - timedelta(seconds=self.retention_s)
                session.execute(delete(IdempotencyKeyRow)
                                .where(IdempotencyKeyRow.created_at < cutoff))
        return outcomes

    def answer(self, key_hash: str, body: dict[str, Any]) -> dict[str, Any]:
        """Record the first answer of a stored key; the answer that is recorded.

        A compare-and-set: when another attempt answered first, its body wins and is returned,
        so every attempt of one feedback sends the same bytes.
        """
        with self.store.write(lock=LOCK) as session:
            session.execute(
                update(IdempotencyKeyRow)
                .where(IdempotencyKeyRow.key_hash == key_hash,
                       IdempotencyKeyRow.status == "stored")
                .values(status="answered", response=body))
            stored = session.scalar(select(IdempotencyKeyRow.response)
                                    .where(IdempotencyKeyRow.key_hash == key_hash))
        return stored if stored is not None else body

    def wait_answered(self, key_hash: str, timeout_s: float,
                      poll_s: float = 0.05) -> StoredAnswer | None:
        """The key's answer once it has a body, waiting while the key is younger than
        ``timeout_s`` (another process committed it and is answering it now); an older key
        without a body was stored by an attempt that died. None: the key is gone."""
        while True:
            found = self.find(key_hash)
            if found is None or found.body is not None or found.age_s() >= timeout_s:
                return found
            time.sleep(poll_s)
