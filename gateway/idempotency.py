"""Feedback that is safe to retry: a repeated ``POST /feedback`` gets the first answer.

A client that sent feedback and got no answer (timeout, connection reset, the gateway killed)
cannot know whether its rows were stored. With an ``Idempotency-Key`` header, or without one but
with the prediction's ``request_id`` in ``labels``, it may simply send the same request again:

* the key names the feedback: its rows are stored under ``feedback_id = idem-<sha256(key)>``
  (:func:`feedback_id_for`), so **the key is on disk in the very append that stores the rows**
  (one write to ``prod_data.csv``, under its file lock, fsynced; a torn row is dropped by the next
  append). No second file has to agree with the CSV for the key to be known: either the rows are
  there, and so is the key, or neither is.
* the first answer (status 201, body, ``X-Model-Version``) is then appended to a journal beside
  the CSV, ``<data_dir>/prod_data.idempotency.jsonl``, fsynced before the answer leaves, so a
  replay is byte for byte the first body, also after a restart.
* after a crash between the rows and the journal line (the gateway SIGKILLed under load: rows
  written, nobody answered), the index is rebuilt from both files on the first keyed request:
  a key whose rows are in the CSV but whose answer is not in the journal gets its answer
  reconstructed from the rows (``rows_written`` = its rows, ``prod_rows_total`` = the CSV line of
  its last row, which is the total right after its append: appends are contiguous), then
  journaled. A key with no rows was never stored: the retry stores it, with the same
  ``feedback_id``, so image and label files a crashed attempt left behind are overwritten, not
  doubled.

Scope: with the header, the key alone identifies the feedback (a client string up to 128
printable ASCII characters; the same key with another image or other labels is a 409
``idempotency_key_reused``, as long as the first request's fingerprint is known). Without it, a
``request_id`` plus the exact image and labels do: sending the identical correction of one
prediction twice stores it once, while a *different* correction of the same prediction is new
feedback. Without either, every request is new feedback, as before. Only a 201 is remembered: a
request that failed stored nothing and is simply run again.

The index lives in this process (the gateway runs as one uvicorn process); same-key requests in
flight at once are serialised by a per-key lock, so the second waits and replays the first.

Example:
    >>> check_key("order-42/try"), feedback_id_for(dedupe_scope("k", None, "f"))[:5]
    ('order-42/try', 'idem-')
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from yoloserve.errors import IdempotencyKeyReused, InvalidIdempotencyKey
from yoloserve.files import GroupCommit
from yoloserve.schemas import FeedbackLabels

logger = logging.getLogger("gateway.idempotency")

KEY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 128
ID_PREFIX = "idem-"
JOURNAL_NAME = "prod_data.idempotency.jsonl"
_KEY = re.compile(r"[\x20-\x7e]+")
_ID_MARK = b"," + ID_PREFIX.encode()


def check_key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value, checked (None when it was not sent).

    Raises:
        InvalidIdempotencyKey: empty, longer than 128 characters, or not printable ASCII.
    """
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_KEY_LENGTH or not _KEY.fullmatch(raw) or not raw.strip():
        raise InvalidIdempotencyKey(
            f"{KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return raw


def fingerprint(image_digest: str, labels: FeedbackLabels) -> str:
    """What a retry must repeat: the image's sha256 and the labels, canonically."""
    canonical = json.dumps(labels.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{image_digest}\n{canonical}".encode()).hexdigest()


def dedupe_scope(key: str | None, request_id: str | None, print_: str) -> str | None:
    """The string that names this feedback for retries, or None when it has no name.

    The header names it alone (and a reuse with other content is refused); a ``request_id``
    names it together with its content (another correction of that prediction is new feedback).
    """
    if key is not None:
        return f"key\n{key}"
    if request_id is not None:
        return f"request\n{request_id}\n{print_}"
    return None


def feedback_id_for(scope: str) -> str:
    """The ``feedback_id`` every attempt of the feedback named by ``scope`` stores under."""
    return ID_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Answer:
    """A 201 that was (or, after a crash, would have been) sent, as the journal keeps it.

    Attributes:
        feedback_id: Also the index key.
        fingerprint: The first request's :func:`fingerprint`; None when rebuilt from the CSV.
        model_version: ``X-Model-Version`` of the answer.
        body: The JSON body (``FeedbackResponse``); None for rows found without an answer.
        rows_written: Rows the feedback stored.
        prod_rows_total: CSV rows right after its append.
    """

    feedback_id: str
    fingerprint: str | None
    model_version: str
    body: dict[str, Any] | None
    rows_written: int
    prod_rows_total: int


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class IdempotencyStore:
    """Which keyed feedback is stored, and the answers it got (see the module docstring).

    Args:
        journal: The answers file (JSON lines), created on the first answer.
        prod_csv: ``prod_data.csv``, read once to find keyed rows without a journaled answer.
    """

    def __init__(self, journal: Path, prod_csv: Path) -> None:
        self.journal = Path(journal)
        self.prod_csv = Path(prod_csv)
        self._index: dict[str, Answer] | None = None
        self._loading = asyncio.Lock()
        self._key_locks: dict[str, _KeyLock] = {}
        # Answers arriving together share one fsync, as the rows they follow did.
        self._writes: GroupCommit[bytes, None] = GroupCommit(self._append)

    async def find(self, feedback_id: str, print_: str, *, strict: bool) -> Answer | None:
        """The stored feedback of this id, or None when nothing of it is on disk.

        Args:
            feedback_id: :func:`feedback_id_for` of the request's scope.
            print_: The request's :func:`fingerprint`.
            strict: Refuse a known id whose first request had another fingerprint.

        Raises:
            IdempotencyKeyReused: ``strict`` and the content differs from the first request's.
        """
        index = await self._loaded()
        found = index.get(feedback_id)
        if found is not None and strict and found.fingerprint not in (None, print_):
            raise IdempotencyKeyReused(
                f"this {KEY_HEADER} was used for another image or other labels; use a new key "
                "for new feedback"
            )
        return found

    @contextlib.asynccontextmanager
    async def hold(self, feedback_id: str) -> AsyncIterator[None]:
        """Serialise requests of one id: a concurrent retry waits, then finds the first answer."""
        # Counted, not just looked at: a released lock may still have a waiter, and a new lock
        # for a third request would let it run beside that waiter.
        entry = self._key_locks.setdefault(feedback_id, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._key_locks[feedback_id]

    async def remember(self, answer: Answer) -> None:
        """Journal a 201 (fsynced) and index it; call before the answer is sent."""
        line = (json.dumps(asdict(answer), separators=(",", ":")) + "\n").encode()
        await run_in_threadpool(self._writes.submit, line)
        (await self._loaded())[answer.feedback_id] = answer

    def _append(self, lines: list[bytes]) -> list[None]:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal, "a+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                # A line torn by a crash must not swallow the next answer: end it first.
                torn = f.read(1) != b"\n"
                if torn:
                    f.write(b"\n")
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return [None] * len(lines)

    async def _loaded(self) -> dict[str, Answer]:
        if self._index is None:
            async with self._loading:
                if self._index is None:
                    self._index = await run_in_threadpool(self._load)
        return self._index

    def _load(self) -> dict[str, Answer]:
        index = _read_journal(self.journal)
        rebuilt = 0
        for answer in _keyed_rows(self.prod_csv):
            if answer.feedback_id not in index:
                index[answer.feedback_id] = answer
                rebuilt += 1
        if rebuilt:
            logger.warning("%d keyed feedbacks were stored but never answered (a crash); "
                           "a retry gets its answer", rebuilt)
        return index


def _read_journal(path: Path) -> dict[str, Answer]:
    index: dict[str, Answer] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return index
    for line in lines:
        try:
            answer = Answer(**json.loads(line))
        except (ValueError, TypeError):
            # A line torn by a crash was never followed by an answer; its rows (if any) are
            # found in the CSV instead.
            continue
        index[answer.feedback_id] = answer
    return index


def _keyed_rows(path: Path) -> list[Answer]:
    """Keyed feedbacks in ``prod_data.csv``: rows, the total after the last, the model version."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    found: dict[str, list[Any]] = {}  # feedback_id -> [rows, last row number, version]
    with f:
        header = next(csv.reader([f.readline().decode()]), [])
        if "feedback_id" not in header:
            return []
        id_col, version_col = header.index("feedback_id"), header.index("model_version")
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # a torn last row: never acknowledged, dropped by the next append
            if _ID_MARK not in raw:  # cheap pre-filter: parse only keyed rows
                continue
            row = next(csv.reader([raw.decode()]))
            if not row[id_col].startswith(ID_PREFIX):
                continue
            entry = found.setdefault(row[id_col], [0, 0, row[version_col]])
            entry[0] += 1
            entry[1] = number
    return [
        Answer(feedback_id, None, version, None, rows, total)
        for feedback_id, (rows, total, version) in found.items()
    ]
