"""Append-only CSV files with a fixed header: ``data/ref_data.csv`` and ``data/prod_data.csv``.

Several gateway workers, threads and the ref-data builder may append to the same file at once, so
every append holds an exclusive file lock (``<file>.lock``, works across threads and processes),
writes the header if the file is new, refuses a file whose header differs (it is never truncated
or rewritten: it holds acknowledged rows), and flushes + fsyncs before returning, so a row that
was acknowledged is on disk. Appends of one store that arrive together share one lock hold and
one fsync (``yoloserve.files.GroupCommit``): under 32 concurrent feedback writers the fsync under
the lock was the queue every writer waited in.

One row is always one line: values containing a line break are refused. That keeps ``count()`` a
plain newline count and lets an append recognise a row torn by a crash (a last line without
its newline, never acknowledged) and drop it before writing.

Example:
    >>> from pathlib import Path
    >>> store = CsvStore(Path("/tmp/ref_data.csv"), ref_header(2))
    >>> store.append([{"emb_0": 0.5, "emb_1": -1.25, "target": "circle"}])
    1
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from yoloserve.errors import CsvSchemaError  # callers may import it from here too
from yoloserve.files import GroupCommit, fsync_dir

PROD_EXTRA_COLUMNS: tuple[str, ...] = (
    "prediction", "timestamp", "feedback_id", "request_id", "model_version", "image",
)
_READ_CHUNK = 1 << 20


def embedding_columns(dim: int) -> list[str]:
    """``emb_0`` .. ``emb_{dim-1}``."""
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    return [f"emb_{i}" for i in range(dim)]


def ref_header(dim: int) -> list[str]:
    """Columns of ``ref_data.csv``: ``emb_0..emb_{dim-1}, target``."""
    return [*embedding_columns(dim), "target"]


def prod_header(dim: int) -> list[str]:
    """Columns of ``prod_data.csv``: the reference columns plus prediction and bookkeeping."""
    return [*ref_header(dim), *PROD_EXTRA_COLUMNS]


def embedding_fields(vector: Sequence[float] | np.ndarray) -> dict[str, object]:
    """Row fields ``emb_i`` of one embedding vector, keeping numpy scalars as they are.

    A float32 value is written with its shortest round-trip text, so every writer of the same
    vector writes the same characters.
    """
    values = np.asarray(vector).ravel()
    return {f"emb_{i}": v for i, v in enumerate(values)}


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, np.floating | np.integer):
        return str(value)  # numpy prints the shortest text that round-trips in its own dtype
    if isinstance(value, float | int | str):
        return str(value)
    raise TypeError(f"unsupported CSV value type {type(value).__name__}")


def count_rows(path: Path) -> int:
    """Data rows of a CSV: complete lines after the header, counted without parsing.

    The count ``CsvStore.count`` gives, for readers that hold no store (``reporting watch``
    polls it every few seconds): 0 if the file is missing, and a last line still being written
    (no newline yet, not acknowledged) is not counted.
    """
    counted = _count_lines(Path(path))
    return 0 if counted is None else max(counted[2] - 1, 0)


def _count_lines(
    path: Path, resume: tuple[int, int, int] | None = None
) -> tuple[int, int, int] | None:
    """Count newlines, resuming from an earlier count of the same file where one is given.

    Args:
        path: the file.
        resume: ``(inode, offset just after a newline, newlines before it)`` from an earlier
            call; used only while the file is the same (inode) and has not shrunk below it.

    Returns:
        ``(inode, offset just after the last newline, newlines)``, or None if the file is
        missing.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    start, lines = 0, 0
    if resume is not None and resume[0] == st.st_ino and resume[1] <= st.st_size:
        start, lines = resume[1], resume[2]
    boundary = start
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while pos < st.st_size:
            chunk = f.read(min(_READ_CHUNK, st.st_size - pos))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            last = chunk.rfind(b"\n")
            if last >= 0:
                boundary = pos + last + 1
            pos += len(chunk)
    # Resume only from a line boundary: bytes after it may be a torn row that a writer will cut
    # away and overwrite.
    return (st.st_ino, boundary, lines)


# FileLock guards against other processes; threads of this process that hold separate CsvStore
# objects for the same file also meet here, so no thread relies on per-thread lock semantics.
_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(path, threading.Lock())


class CsvStore:
    """An append-only CSV file with a fixed header, safe for concurrent writers.

    Args:
        path: the CSV file; it and its folder are created on the first append.
        header: the exact column list; an existing file must start with it.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        if not header or len(set(header)) != len(header):
            raise ValueError("header must be a non-empty list of distinct column names")
        self.path = Path(path).resolve()
        self.header = list(header)
        self._header_line = self._encode([self.header])
        self._file_lock = FileLock(str(self.path) + ".lock")
        self._thread_lock = _thread_lock(self.path)
        # (inode, offset just after a newline, newlines before it): complete lines are never
        # rewritten, so later counts only read what was appended since.
        self._cache: tuple[int, int, int] | None = None
        self._cache_guard = threading.Lock()
        self._group: GroupCommit[tuple[bytes, int], int] = GroupCommit(self._commit)

    def append(self, rows: list[dict[str, object]]) -> int:
        """Append rows atomically with respect to other writers and return the total row count.

        Args:
            rows: one dict per row with exactly the header's columns. ``None`` is written as an
                empty field; numbers and strings as text.

        Returns:
            Data rows in the file after this append (the header is not counted).

        Raises:
            CsvSchemaError: a row has missing or unknown columns or a value with a line break,
                or the existing file has another header (the file is left untouched).
        """
        # Checked here, in the caller's thread: a bad row fails its own call, not the batch.
        payload = self._encode([self._values(row) for row in rows])
        return self._group.submit((payload, len(rows)))

    def _commit(self, batch: list[tuple[bytes, int]]) -> list[int]:
        """Append a batch of payloads under the locks, fsync once; each one's total after it."""
        with self._thread_lock, self._file_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with open(self.path, "a+b") as f:
                self._prepare(f)
                f.write(b"".join(payload for payload, _ in batch))
                f.flush()
                os.fsync(f.fileno())
            if created:
                # A new file's directory entry must be durable too, or a crash loses the file.
                fsync_dir(self.path.parent)
            total = self.count()
        # The batch went in, in order, while nobody else could write: each payload's total is
        # the file's total less the rows of the payloads after it.
        totals, after = [], total
        for _, n in reversed(batch):
            totals.append(after)
            after -= n
        return totals[::-1]

    def count(self) -> int:
        """Data rows in the file: complete lines after the header (0 if the file is missing).

        A row being written by another process right now, not yet acknowledged, is not counted.
        """
        with self._cache_guard:
            counted = _count_lines(self.path, resume=self._cache)
            if counted is None:
                return 0
            self._cache = counted
        return max(counted[2] - 1, 0)

    def _values(self, row: dict[str, object]) -> list[str]:
        if row.keys() != set(self.header):
            missing = [c for c in self.header if c not in row]
            unknown = sorted(set(row) - set(self.header))
            raise CsvSchemaError(
                f"row for {self.path.name} does not match its header: "
                f"missing {missing[:5]}, unknown {unknown[:5]}"
            )
        values = [_format(row[c]) for c in self.header]
        if any("\n" in v or "\r" in v for v in values):
            raise CsvSchemaError(f"a value for {self.path.name} contains a line break")
        return values

    @staticmethod
    def _encode(rows: list[list[str]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode("utf-8")

    def _prepare(self, f: io.BufferedRandom) -> None:
        """Under the lock: write the header into an empty file, or check it, and drop a torn row."""
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            f.write(self._header_line)
            return
        f.seek(0)
        first = f.readline()
        if not first.endswith(b"\n"):
            if self._header_line.startswith(first):
                # Only a torn header, from a crash before the first acknowledged row.
                f.truncate(0)
                f.write(self._header_line)
                return
            raise CsvSchemaError(f"{self.path} has no complete header line; expected {self.header}")
        found = next(csv.reader([first.decode("utf-8", errors="replace").rstrip("\r\n")]), [])
        if found != self.header:
            raise CsvSchemaError(
                f"{self.path} has another header ({len(found)} columns, starting {found[:3]}); "
                f"expected {len(self.header)} columns starting {self.header[:3]}. Move the file "
                "aside (or rebuild it) instead of mixing schemas in it."
            )
        f.seek(size - 1)
        if f.read(1) != b"\n":
            self._drop_torn_row(f, size)

    def _drop_torn_row(self, f: io.BufferedRandom, size: int) -> None:
        # The last line has no newline: a writer died mid-row before fsync returned, so the row
        # was never acknowledged. Cut back to the end of the last complete line.
        pos = size
        while pos > 0:
            step = min(_READ_CHUNK, pos)
            f.seek(pos - step)
            cut = f.read(step).rfind(b"\n")
            if cut >= 0:
                f.truncate(pos - step + cut + 1)
                f.seek(0, os.SEEK_END)
                with self._cache_guard:
                    self._cache = None
                return
            pos -= step

