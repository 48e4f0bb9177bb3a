"""Fixed-header CSV files: ``data/ref_data.csv`` and ``data/prod_data.csv`` (their columns).

``prod_data.csv`` is an export of the store (``yoloserve.feedback.export`` is its only writer);
``ref_data.csv`` is built by ``scripts/build_ref_data.py`` with :class:`CsvStore`. A file with
another header is refused, never rewritten. One row is always one line (values with a line
break are refused), which keeps ``count_rows`` a plain newline count.

Example:
    >>> from pathlib import Path
    >>> store = CsvStore(Path("/tmp/ref_data.csv"), ref_header(2))
    >>> store.append([{"emb_0": 0.5, "emb_1": -1.25, "target": "circle"}]) >= 1
    True
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yoloserve.errors import CsvSchemaError  # callers may import it from here too
from yoloserve.files import fsync_dir

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


def read_header(path: Path) -> list[str] | None:
    """The header of a CSV file: its first complete line; None if the file is missing or empty.

    Raises:
        CsvSchemaError: the file has no complete first line.
    """
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    if not first:
        return None
    if not first.endswith(b"\n"):
        raise CsvSchemaError(f"{path} has no complete header line")
    return next(csv.reader([first.decode("utf-8", errors="replace").rstrip("\r\n")]), [])


def check_header(path: Path, header: list[str]) -> None:
    """Refuse a CSV that exists with another header (it is never rewritten).

    Raises:
        CsvSchemaError: the file starts with other columns.
    """
    found = read_header(path)
    if found is not None and found != header:
        raise CsvSchemaError(
            f"{path} has another header ({len(found)} columns, starting {found[:3]}); "
            f"expected {len(header)} columns starting {header[:3]}. Move the file "
            "aside (or rebuild it) instead of mixing schemas in it."
        )


def encode_rows(rows: list[list[str]]) -> bytes:
    """CSV lines of ``rows`` (``\\n`` line ends), as the CSVs are written.

    Raises:
        CsvSchemaError: a value contains a line break (one row is always one line).
    """
    if any("\n" in v or "\r" in v for row in rows for v in row):
        raise CsvSchemaError("a CSV value contains a line break")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


class CsvStore:
    """An append-only CSV file with a fixed header, written by one writer at a time.

    ``ref_data.csv`` is built with it into a temporary file (``scripts/build_ref_data.py``);
    ``prod_data.csv`` is an export of the store (``yoloserve.feedback.export``).

    Args:
        path: the CSV file; it and its folder are created on the first append.
        header: the exact column list; an existing file must start with it.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        if not header or len(set(header)) != len(header):
            raise ValueError("header must be a non-empty list of distinct column names")
        self.path = Path(path).resolve()
        self.header = list(header)

    def append(self, rows: list[dict[str, object]]) -> int:
        """Append rows, fsynced, and return the total row count.

        Args:
            rows: one dict per row with exactly the header's columns. ``None`` is written as an
                empty field; numbers and strings as text.

        Returns:
            Data rows in the file after this append (the header is not counted).

        Raises:
            CsvSchemaError: a row has missing or unknown columns or a value with a line break,
                or the existing file has another header (the file is left untouched).
        """
        payload = encode_rows([self._values(row) for row in rows])
        check_header(self.path, self.header)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "ab") as f:
            if created:
                f.write(encode_rows([self.header]))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_dir(self.path.parent)
        return self.count()

    def count(self) -> int:
        """Data rows in the file: complete lines after the header (0 if the file is missing)."""
        return count_rows(self.path)

    def _values(self, row: dict[str, object]) -> list[str]:
        if row.keys() != set(self.header):
            missing = [c for c in self.header if c not in row]
            unknown = sorted(set(row) - set(self.header))
            raise CsvSchemaError(
                f"row for {self.path.name} does not match its header: "
                f"missing {missing[:5]}, unknown {unknown[:5]}"
            )
        return [_format(row[c]) for c in self.header]
