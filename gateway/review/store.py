"""The review queue on disk: one SQLite database and one image file per open item.

``<review_dir>/review.db`` holds every item (WAL journal, ``synchronous=FULL``: an answered
dismiss or close is on disk); ``<review_dir>/images/<review_id>.<ext>`` holds the image of each
open item, written atomically before its row, so a row never points at half a file. SQLite's
own locking lets several gateway processes on one host share the queue; it is not safe on a
network filesystem (an RWX volume shared by replicas on several nodes): there, each replica
needs its own review folder (``GATEWAY_REVIEW_DIR``) or the queue a database server.

Items are ``open`` until labelled, dismissed or evicted. A closed item keeps its row (so a second
close answers "already closed", not "unknown") but loses its image; the oldest closed rows are
pruned beyond ``max_closed``. Open items are bounded by ``max_items``: past it, the lowest
priority (then the oldest) is evicted.

All methods block (file and database I/O): the gateway calls them in its thread pool.

Example:
    >>> import tempfile
    >>> store = ReviewStore(Path(tempfile.mkdtemp()), max_items=10)
    >>> item = store.add(NewItem("uncertain", 0.8, "3", "req-1", 64, 48, [], "png"), b"...")
    >>> store.list_open(20)[1], store.close(item.review_id, "dismissed").status
    (1, 'dismissed')
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from yoloserve.errors import ReviewItemClosed, UnknownReviewItem
from yoloserve.files import atomic_write

DB_NAME = "review.db"
IMAGES = "images"
Outcome = Literal["labelled", "dismissed"]
Status = Literal["open", "labelled", "dismissed", "evicted"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    review_id     TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    priority      REAL NOT NULL,
    created_at    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    closed_at     TEXT,
    model_version TEXT NOT NULL,
    request_id    TEXT,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    boxes         TEXT NOT NULL,
    image_file    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_open ON items (status, priority DESC, seq);
"""
_COLUMNS = (
    "review_id, status, reason, priority, created_at, seq, closed_at, model_version, request_id, "
    "width, height, boxes, image_file"
)
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp"}


@dataclass(frozen=True)
class NewItem:
    """A sampled prediction about to enter the queue.

    Attributes:
        reason: The strategy that picked it.
        priority: How strongly, 0..1.
        model_version: The version that predicted the boxes.
        request_id: The prediction's request id.
        width, height: The image's size.
        boxes: The predicted boxes as ``/predict`` answered them (JSON objects).
        image_ext: ``png``, ``jpeg``, ``webp`` or ``bmp``: the stored image's encoding.
    """

    reason: str
    priority: float
    model_version: str
    request_id: str | None
    width: int
    height: int
    boxes: list[dict[str, Any]]
    image_ext: str


@dataclass(frozen=True)
class StoredItem:
    """One row of the queue."""

    review_id: str
    status: Status
    reason: str
    priority: float
    created_at: str
    closed_at: str | None
    model_version: str
    request_id: str | None
    width: int
    height: int
    boxes: list[dict[str, Any]]
    image_file: str

    @property
    def media_type(self) -> str:
        """The stored image's content type."""
        return MEDIA_TYPES.get(Path(self.image_file).suffix.lstrip("."), "application/octet-stream")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _row_to_item(row: sqlite3.Row) -> StoredItem:
    data = dict(row)
    data.pop("seq")
    data["boxes"] = json.loads(data["boxes"])
    return StoredItem(**data)


class ReviewStore:
    """The queue's items, their images, the bounds.

    Args:
        folder: Holds ``review.db`` and ``images/`` (created on first use).
        max_items: Open items kept; past it the lowest priority, then oldest, is evicted.
        max_closed: Closed rows kept to answer "already closed"; default ``10 * max_items``.
    """

    def __init__(self, folder: Path, max_items: int, max_closed: int | None = None) -> None:
        self.folder = Path(folder)
        self.images = self.folder / IMAGES
        self.max_items = max_items
        self.max_closed = max_closed if max_closed is not None else 10 * max_items
        self._db: sqlite3.Connection | None = None
        # One connection per store, shared by the thread pool: the lock keeps its use serial.
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # Opened on first use, not at build time: building the app must not create files.
        if self._db is None:
            self.images.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.folder / DB_NAME, timeout=10.0, isolation_level=None,
                check_same_thread=False,
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            # IMMEDIATE: take the write lock now, so two processes never both read-then-write.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close_db(self) -> None:
        """Close the database connection (reopened on the next call)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _unlink_image(self, name: str) -> None:
        (self.images / name).unlink(missing_ok=True)

    def add(self, item: NewItem, image: bytes) -> StoredItem:
        """Store a new open item and its image; evict past ``max_items``.

        Returns:
            The stored item (possibly already evicted, when its priority is the lowest of a
            full queue).
        """
        if item.image_ext not in MEDIA_TYPES:
            raise ValueError(f"unsupported image extension {item.image_ext!r}")
        review_id = f"rv-{uuid.uuid4().hex[:16]}"
        image_file = f"{review_id}.{item.image_ext}"
        with self._lock:
            self._connect()  # creates the images folder on first use
        atomic_write(self.images / image_file, image, temp_suffix=".tmp")
        try:
            with self._transaction() as db:
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM items").fetchone()[0]
                db.execute(
                    f"INSERT INTO items ({_COLUMNS}) VALUES (?, 'open', ?, ?, ?, ?, NULL, ?, ?, "
                    "?, ?, ?, ?)",
                    (review_id, item.reason, item.priority, _now(), seq, item.model_version,
                     item.request_id, item.width, item.height, json.dumps(item.boxes),
                     image_file),
                )
                evicted = self._evict(db)
                self._prune_closed(db)
        except BaseException:
            self._unlink_image(image_file)
            raise
        for name in evicted:
            self._unlink_image(name)
        return self.get(review_id)

    def _evict(self, db: sqlite3.Connection) -> list[str]:
        rows = db.execute(
            "SELECT review_id, image_file FROM items WHERE status = 'open' "
            "ORDER BY priority DESC, seq DESC LIMIT -1 OFFSET ?",
            (self.max_items,),
        ).fetchall()
        for row in rows:
            db.execute(
                "UPDATE items SET status = 'evicted', closed_at = ? WHERE review_id = ?",
                (_now(), row["review_id"]),
            )
        return [row["image_file"] for row in rows]

    def _prune_closed(self, db: sqlite3.Connection) -> None:
        db.execute(
            "DELETE FROM items WHERE review_id IN (SELECT review_id FROM items "
            "WHERE status != 'open' ORDER BY seq DESC LIMIT -1 OFFSET ?)",
            (self.max_closed,),
        )

    def get(self, review_id: str) -> StoredItem:
        """One item, open or closed.

        Raises:
            UnknownReviewItem: No such id.
        """
        with self._lock:
            row = self._connect().execute(
                f"SELECT {_COLUMNS} FROM items WHERE review_id = ?", (review_id,)
            ).fetchone()
        if row is None:
            raise UnknownReviewItem(f"no review item {review_id!r}")
        return _row_to_item(row)

    def get_open(self, review_id: str) -> StoredItem:
        """An item that is still open.

        Raises:
            UnknownReviewItem: No such id.
            ReviewItemClosed: It was labelled, dismissed or evicted.
        """
        item = self.get(review_id)
        if item.status != "open":
            raise ReviewItemClosed(
                f"review item {review_id!r} is already closed ({item.status} at {item.closed_at})"
            )
        return item

    def list_open(self, limit: int) -> tuple[list[StoredItem], int]:
        """Up to ``limit`` open items, highest priority first (oldest first on ties), and how
        many are open in all."""
        with self._lock:
            db = self._connect()
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM items WHERE status = 'open' "
                "ORDER BY priority DESC, seq ASC LIMIT ?",
                (limit,),
            ).fetchall()
            total = db.execute("SELECT COUNT(*) FROM items WHERE status = 'open'").fetchone()[0]
        return [_row_to_item(row) for row in rows], int(total)

    def open_count(self) -> int:
        """Open items (the queue depth)."""
        with self._lock:
            row = self._connect().execute("SELECT COUNT(*) FROM items WHERE status = 'open'")
            return int(row.fetchone()[0])

    def image(self, review_id: str) -> tuple[Path, str]:
        """The stored image of an open item and its content type.

        Raises:
            UnknownReviewItem: No such id, or its image file is gone.
            ReviewItemClosed: The item is closed (its image was removed).
        """
        item = self.get_open(review_id)
        path = self.images / item.image_file
        if not path.is_file():
            raise UnknownReviewItem(f"the image of review item {review_id!r} is missing")
        return path, item.media_type

    def close(self, review_id: str, outcome: Outcome) -> StoredItem:
        """Close an open item as ``labelled`` or ``dismissed`` and remove its image.

        The update only matches an open row, so of two concurrent closes exactly one wins.

        Raises:
            UnknownReviewItem: No such id.
            ReviewItemClosed: It was already closed.
        """
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE items SET status = ?, closed_at = ? WHERE review_id = ? "
                "AND status = 'open'",
                (outcome, _now(), review_id),
            ).rowcount
        if not changed:
            self.get_open(review_id)  # raises the right error: unknown or already closed
            raise ReviewItemClosed(f"review item {review_id!r} is already closed")
        item = self.get(review_id)
        self._unlink_image(item.image_file)
        return item
