"""The review queue in the store: one row per item (``review_items``), one image file per open item.

Every gateway replica opens the same store (``yoloserve.store``: SQLite embedded, PostgreSQL
shared), so they serve one queue: an item sampled by one replica is listed, shown and closed by
any other. Each change is one write transaction serialised on the store's ``review`` lock, so
the bound, the order (``seq``) and "closed once" hold across replicas. The images stay files,
``<data_dir>/review/images/<review_id>.<ext>``, on the data volume the replicas share (as
``data/feedback/``), written atomically before their row, so a row never points at half a file.

Items are ``open`` until labelled, dismissed or evicted. A closed item keeps its row (so a second
close answers "already closed", not "unknown") but loses its image; the oldest closed rows are
pruned beyond ``max_closed``. Open items are bounded by ``max_items``: past it, the lowest
priority (then the oldest) is evicted.

A ``review.db`` left by an older release (the queue's own SQLite file, one per replica) is
imported once into an empty store (:func:`import_review_db`) and renamed ``review.db.migrated``.

All methods block (database and file I/O): the gateway calls them in its thread pool.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> store = ReviewStore(Store.sqlite(folder / "yoloserve.db"), folder / "images", 10)
    >>> item = store.add(NewItem("uncertain", 0.8, "3", "req-1", 64, 48, [], "png"), b"...")
    >>> store.list_open(20)[1], store.close(item.review_id, "dismissed").status
    (1, 'dismissed')
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from yoloserve.errors import ReviewItemClosed, UnknownReviewItem
from yoloserve.files import atomic_write
from yoloserve.store.engine import Store
from yoloserve.store.tables import ReviewItemRow

logger = logging.getLogger("gateway.review")

LEGACY_DB_NAME = "review.db"
IMAGES = "images"
LOCK = "review"
Outcome = Literal["labelled", "dismissed"]
Status = Literal["open", "labelled", "dismissed", "evicted"]
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
    """One item of the queue (times as ISO 8601 strings in UTC, to the millisecond)."""

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


def _now() -> datetime:
    # Milliseconds: what the API shows is what is stored.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones in its time zone.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")


def _to_item(row: ReviewItemRow) -> StoredItem:
    return StoredItem(
        review_id=row.review_id,
        status=cast(Status, row.status),
        reason=row.reason,
        priority=row.priority,
        created_at=cast(str, _iso(row.created_at)),
        closed_at=_iso(row.closed_at),
        model_version=row.model_version,
        request_id=row.request_id,
        width=row.width,
        height=row.height,
        boxes=list(row.boxes),
        image_file=row.image_file,
    )


_OPEN = ReviewItemRow.status == "open"


class ReviewStore:
    """The queue's items (rows of the store), their images (files), the bounds.

    Args:
        store: The store every replica shares.
        images: Folder of the open items' images (created on the first add); the replicas
            must share it, as they share ``data/``.
        max_items: Open items kept; past it the lowest priority, then oldest, is evicted.
        max_closed: Closed rows kept to answer "already closed"; default ``10 * max_items``.
    """

    def __init__(
        self, store: Store, images: Path, max_items: int, max_closed: int | None = None
    ) -> None:
        self.store = store
        self.images = Path(images)
        self.max_items = max_items
        self.max_closed = max_closed if max_closed is not None else 10 * max_items

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
        self.images.mkdir(parents=True, exist_ok=True)
        atomic_write(self.images / image_file, image, temp_suffix=".tmp")
        try:
            with self.store.write(LOCK) as session:
                seq = session.scalar(select(func.coalesce(func.max(ReviewItemRow.seq), 0)))
                session.add(ReviewItemRow(
                    review_id=review_id, status="open", reason=item.reason,
                    priority=item.priority, created_at=_now(), seq=int(seq or 0) + 1,
                    closed_at=None, model_version=item.model_version,
                    request_id=item.request_id, width=item.width, height=item.height,
                    boxes=item.boxes, image_file=image_file,
                ))
                session.flush()
                evicted = self._evict(session)
                self._prune_closed(session)
        except BaseException:
            self._unlink_image(image_file)
            raise
        # After the commit: a rolled-back eviction must not have lost its image.
        for name in evicted:
            self._unlink_image(name)
        return self.get(review_id)

    def _evict(self, session: Session) -> list[str]:
        rows = session.execute(
            select(ReviewItemRow.review_id, ReviewItemRow.image_file)
            .where(_OPEN)
            .order_by(ReviewItemRow.priority.desc(), ReviewItemRow.seq.desc())
            .offset(self.max_items)
        ).all()
        if rows:
            session.execute(
                update(ReviewItemRow)
                .where(ReviewItemRow.review_id.in_([row.review_id for row in rows]))
                .values(status="evicted", closed_at=_now())
            )
        return [row.image_file for row in rows]

    def _prune_closed(self, session: Session) -> None:
        # The newest closed row beyond the bound: it and every older closed row go.
        oldest_kept = session.scalar(
            select(ReviewItemRow.seq)
            .where(~_OPEN)
            .order_by(ReviewItemRow.seq.desc())
            .offset(self.max_closed)
            .limit(1)
        )
        if oldest_kept is not None:
            session.execute(
                delete(ReviewItemRow).where(~_OPEN, ReviewItemRow.seq <= oldest_kept)
            )

    def get(self, review_id: str) -> StoredItem:
        """One item, open or closed.

        Raises:
            UnknownReviewItem: No such id.
        """
        with self.store.read() as session:
            row = session.get(ReviewItemRow, review_id)
            if row is None:
                raise UnknownReviewItem(f"no review item {review_id!r}")
            return _to_item(row)

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
        many are open in all (one snapshot)."""
        with self.store.read() as session:
            rows = session.scalars(
                select(ReviewItemRow)
                .where(_OPEN)
                .order_by(ReviewItemRow.priority.desc(), ReviewItemRow.seq.asc())
                .limit(limit)
            ).all()
            total = session.scalar(select(func.count()).where(_OPEN))
            return [_to_item(row) for row in rows], int(total or 0)

    def open_count(self) -> int:
        """Open items (the queue depth)."""
        with self.store.read() as session:
            return int(session.scalar(select(func.count()).where(_OPEN)) or 0)

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

        The update only matches an open row, so of two concurrent closes (any replicas)
        exactly one wins.

        Raises:
            UnknownReviewItem: No such id.
            ReviewItemClosed: It was already closed.
        """
        with self.store.write(LOCK) as session:
            result = session.execute(
                update(ReviewItemRow)
                .where(ReviewItemRow.review_id == review_id, _OPEN)
                .values(status=outcome, closed_at=_now())
            )
            changed = getattr(result, "rowcount", 0)
        if not changed:
            self.get_open(review_id)  # raises the right error: unknown or already closed
            raise ReviewItemClosed(f"review item {review_id!r} is already closed")
        item = self.get(review_id)
        self._unlink_image(item.image_file)
        return item

    def is_empty(self) -> bool:
        """Whether the store holds no item at all, open or closed."""
        with self.store.read() as session:
            return session.scalar(select(ReviewItemRow.review_id).limit(1)) is None


def _legacy_rows(path: Path) -> list[dict[str, Any]]:
    # mode=rw: a file renamed by another replica a moment ago must not be created empty again.
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10.0)
    try:
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute("SELECT * FROM items ORDER BY seq")]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, never written
                return []
            raise
    finally:
        db.close()


def _utc(text: str) -> datetime:
    # SQLite keeps no offset: every stored time is UTC.
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _legacy_row(data: dict[str, Any]) -> ReviewItemRow:
    closed_at = data["closed_at"]
    return ReviewItemRow(
        review_id=data["review_id"], status=data["status"], reason=data["reason"],
        priority=float(data["priority"]), created_at=_utc(data["created_at"]),
        seq=int(data["seq"]), closed_at=_utc(closed_at) if closed_at else None,
        model_version=data["model_version"], request_id=data["request_id"],
        width=int(data["width"]), height=int(data["height"]),
        boxes=json.loads(data["boxes"]), image_file=data["image_file"],
    )


def import_review_db(queue: ReviewStore, path: Path) -> int:
    """Import the ``review.db`` of an older release into an empty queue, once.

    Its images are already where the queue keeps them (``images/`` beside it). The file is
    renamed ``review.db.migrated`` afterwards, so a second start (or another replica) does not
    import it again; a store that already holds review items is left alone (the file is then
    only renamed: every replica had its own file, the first one imported wins).

    Returns:
        How many items were imported.
    """
    try:
        rows = _legacy_rows(path)
    except sqlite3.OperationalError:
        if not path.exists():  # none, or another replica imported and renamed it meanwhile
            return 0
        raise
    imported = 0
    with queue.store.write(LOCK) as session:
        if session.scalar(select(ReviewItemRow.review_id).limit(1)) is None:
            session.add_all(_legacy_row(row) for row in rows)
            imported = len(rows)
    with contextlib.suppress(FileNotFoundError):
        path.rename(path.with_name(path.name + ".migrated"))
    if imported:
        logger.warning("imported %d review items from %s into the store", imported, path)
    return imported


def open_review_store(store: Store, folder: Path, max_items: int) -> ReviewStore:
    """The review queue of a gateway: rows in ``store``, images in ``folder/images``, with an
    older release's ``folder/review.db`` imported first if one is still there."""
    queue = ReviewStore(store, folder / IMAGES, max_items)
    import_review_db(queue, folder / LEGACY_DB_NAME)
    return queue
