"""``gateway.review.store`` and ``ratelimit`` on the store (SQLite and PostgreSQL): restart
survival, bounds (lowest priority evicted), closing once, pruned tombstones, image files
following the rows, two processes sharing one queue and one budget, and the one-time import of
an older release's ``review.db``."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.review.ratelimit import RateLimiter
from gateway.review.store import NewItem, ReviewStore, import_review_db, open_review_store
from yoloserve.errors import ReviewItemClosed, UnknownReviewItem
from yoloserve.store.engine import Store

BOX = {"xyxy": [1.0, 2.0, 30.0, 40.0], "conf": 0.3, "cls": 0, "name": "circle"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test runs on the embedded SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'yoloserve.db'}"
    return str(request.getfixturevalue("postgres_url"))


OpenQueue = Callable[..., ReviewStore]


@pytest.fixture
def open_queue(url: str, tmp_path: Path) -> Iterator[OpenQueue]:
    """A queue over its own ``Store`` (its own engine: another process, as far as the database
    can tell) on the test's database; images in ``tmp_path/images``."""
    stores: list[Store] = []

    def build(max_items: int = 10, max_closed: int | None = None) -> ReviewStore:
        store = Store(url)
        stores.append(store)
        return ReviewStore(store, tmp_path / "images", max_items, max_closed)

    yield build
    for store in stores:
        store.dispose()


def _item(priority: float = 0.5, reason: str = "uncertain", ext: str = "png") -> NewItem:
    return NewItem(reason, priority, "3", "req-1", 64, 48, [BOX], ext)


def _images(store: ReviewStore) -> set[str]:
    return {p.name for p in store.images.iterdir() if not p.name.startswith(".")}


def test_an_item_and_its_image_survive_a_restart(open_queue: OpenQueue) -> None:
    store = open_queue()
    added = store.add(_item(), b"image-bytes")
    store.store.dispose()

    again = open_queue()
    (item,), total = again.list_open(20)

    assert total == 1
    assert item == added
    assert item.boxes == [BOX] and item.status == "open"
    assert item.created_at.endswith("+00:00") and item.closed_at is None
    path, media_type = again.image(item.review_id)
    assert path.read_bytes() == b"image-bytes" and media_type == "image/png"


def test_items_are_listed_by_priority_then_age(open_queue: OpenQueue) -> None:
    store = open_queue()
    low = store.add(_item(0.2), b"a")
    high = store.add(_item(0.9), b"b")
    low_later = store.add(_item(0.2), b"c")

    items, _ = store.list_open(20)

    assert [i.review_id for i in items] == [high.review_id, low.review_id, low_later.review_id]
    assert [i.review_id for i in store.list_open(1)[0]] == [high.review_id]


def test_past_the_bound_the_lowest_priority_then_the_oldest_is_evicted(
    open_queue: OpenQueue,
) -> None:
    store = open_queue(max_items=2)
    old_low = store.add(_item(0.1), b"a")
    new_low = store.add(_item(0.1), b"b")
    high = store.add(_item(0.9), b"c")

    items, total = store.list_open(20)

    assert total == 2
    assert {i.review_id for i in items} == {high.review_id, new_low.review_id}
    assert store.get(old_low.review_id).status == "evicted"
    assert _images(store) == {high.image_file, new_low.image_file}
    with pytest.raises(ReviewItemClosed):
        store.close(old_low.review_id, "dismissed")


def test_a_new_item_weaker_than_a_full_queue_is_evicted_at_once(open_queue: OpenQueue) -> None:
    store = open_queue(max_items=1)
    strong = store.add(_item(0.9), b"a")
    weak = store.add(_item(0.1), b"b")
    assert weak.status == "evicted"
    assert [i.review_id for i in store.list_open(5)[0]] == [strong.review_id]


def test_close_once_then_conflict_and_unknown_ids(open_queue: OpenQueue) -> None:
    store = open_queue()
    item = store.add(_item(), b"a")

    closed = store.close(item.review_id, "labelled")

    assert closed.status == "labelled" and closed.closed_at
    assert _images(store) == set(), "a closed item's image is removed"
    with pytest.raises(ReviewItemClosed, match="labelled"):
        store.close(item.review_id, "dismissed")
    with pytest.raises(ReviewItemClosed):
        store.image(item.review_id)
    with pytest.raises(UnknownReviewItem):
        store.close("rv-missing", "dismissed")
    with pytest.raises(UnknownReviewItem):
        store.get_open("rv-missing")
    assert store.open_count() == 0


def test_of_concurrent_closes_from_two_processes_exactly_one_wins(open_queue: OpenQueue) -> None:
    first, second = open_queue(), open_queue()
    item = first.add(_item(), b"a")
    outcomes: list[str] = []

    def close(store: ReviewStore) -> None:
        try:
            store.close(item.review_id, "dismissed")
            outcomes.append("closed")
        except ReviewItemClosed:
            outcomes.append("conflict")

    threads = [threading.Thread(target=close, args=(s,)) for s in [first, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["closed"] + ["conflict"] * 7


def test_two_processes_share_one_queue_and_its_bound(open_queue: OpenQueue) -> None:
    # Two gateway replicas: each has its own engine on the same database.
    first, second = open_queue(max_items=2), open_queue(max_items=2)
    item = first.add(_item(0.5), b"a")
    assert second.get_open(item.review_id) == item
    assert second.image(item.review_id)[0].read_bytes() == b"a"
    second.close(item.review_id, "dismissed")
    with pytest.raises(ReviewItemClosed):
        first.close(item.review_id, "labelled")

    added = [store.add(_item(0.5), b"x") for store in (first, second, first, second)]

    assert first.open_count() == second.open_count() == 2
    # One order across the replicas: of equal priorities the two newest stay, oldest first.
    newest = [a.review_id for a in added[2:]]
    assert [i.review_id for i in first.list_open(5)[0]] == newest
    assert [i.review_id for i in second.list_open(5)[0]] == newest
    assert {first.get(a.review_id).status for a in added[:2]} == {"evicted"}


def test_the_oldest_closed_rows_are_pruned(open_queue: OpenQueue) -> None:
    store = open_queue(max_closed=2)
    ids = []
    for _ in range(4):
        item = store.add(_item(), b"a")
        store.close(item.review_id, "dismissed")
        ids.append(item.review_id)
    store.add(_item(), b"b")  # pruning happens when an item is added

    with pytest.raises(UnknownReviewItem):
        store.get(ids[0])
    with pytest.raises(UnknownReviewItem):
        store.get(ids[1])
    assert [store.get(i).status for i in ids[2:]] == ["dismissed", "dismissed"]


@pytest.mark.parametrize(
    ("ext", "media_type", "raises"),
    [("png", "image/png", False), ("jpeg", "image/jpeg", False), ("webp", "image/webp", False),
     ("bmp", "image/bmp", False), ("gif", None, True), ("../x", None, True)],
)
def test_only_known_image_types_are_stored(
    open_queue: OpenQueue, ext: str, media_type: str | None, raises: bool
) -> None:
    store = open_queue()
    if raises:
        with pytest.raises(ValueError):
            store.add(_item(ext=ext), b"a")
        assert store.open_count() == 0
    else:
        item = store.add(_item(ext=ext), b"a")
        assert store.image(item.review_id)[1] == media_type


def test_an_item_whose_image_vanished_is_unknown_not_a_crash(open_queue: OpenQueue) -> None:
    store = open_queue()
    item = store.add(_item(), b"a")
    (store.images / item.image_file).unlink()
    with pytest.raises(UnknownReviewItem, match="missing"):
        store.image(item.review_id)


def test_building_a_store_creates_no_image_folder(open_queue: OpenQueue, tmp_path: Path) -> None:
    open_queue()
    assert not (tmp_path / "images").exists()


# ---------------------------------------------------------------------------- the rate limit


def test_rate_limit_is_one_budget_for_every_process(url: str) -> None:
    now = [1000.0]
    stores = [Store(url), Store(url)]
    first, second = (RateLimiter(store, 3, clock=lambda: now[0]) for store in stores)
    try:
        assert first.try_acquire() and second.try_acquire()
        now[0] += 30.0
        assert first.try_acquire()
        assert not second.has_room() and not second.try_acquire()
        assert not first.has_room()
        now[0] += 30.0  # the first two left the window, the third has not
        assert second.has_room()
        assert second.try_acquire() and first.try_acquire()
        assert not first.try_acquire() and not second.try_acquire()
    finally:
        for store in stores:
            store.dispose()


def test_concurrent_admissions_never_pass_the_limit(url: str) -> None:
    stores = [Store(url), Store(url)]
    limiters = [RateLimiter(store, 5) for store in stores]
    admitted: list[bool] = []

    def admit(limiter: RateLimiter) -> None:
        admitted.append(limiter.try_acquire())

    threads = [threading.Thread(target=admit, args=(limiters[i % 2],)) for i in range(12)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for store in stores:
            store.dispose()
    assert admitted.count(True) == 5


# ---------------------------------------------------------------------------- the old review.db

# The queue's own SQLite schema of the release before the store (one file per replica).
_LEGACY_SCHEMA = """
CREATE TABLE items (
    review_id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
    priority REAL NOT NULL, created_at TEXT NOT NULL, seq INTEGER NOT NULL, closed_at TEXT,
    model_version TEXT NOT NULL, request_id TEXT, width INTEGER NOT NULL,
    height INTEGER NOT NULL, boxes TEXT NOT NULL, image_file TEXT NOT NULL
);
"""


def legacy_review_db(folder: Path) -> Path:
    """A review folder as the older release left it: two open items (images), one closed."""
    (folder / "images").mkdir(parents=True)
    path = folder / "review.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_LEGACY_SCHEMA)
    rows = [
        ("rv-000000000000000a", "open", "uncertain", 0.4, "2026-01-02T03:04:05.123+00:00", 1,
         None, "2", "req-a", 64, 48, json.dumps([BOX]), "rv-000000000000000a.png"),
        ("rv-000000000000000b", "dismissed", "rare", 0.9, "2026-01-02T03:04:06.000+00:00", 2,
         "2026-01-02T03:05:00.000+00:00", "2", None, 32, 32, "[]", "rv-000000000000000b.jpeg"),
        ("rv-000000000000000c", "open", "novel", 0.8, "2026-01-02T03:04:07.500+00:00", 3,
         None, "3", "req-c", 640, 480, "[]", "rv-000000000000000c.jpeg"),
    ]
    db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    (folder / "images" / "rv-000000000000000a.png").write_bytes(b"png-a")
    (folder / "images" / "rv-000000000000000c.jpeg").write_bytes(b"jpeg-c")
    return path


def test_an_older_review_db_is_imported_once_then_renamed(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "review"
    legacy = legacy_review_db(folder)
    store = Store(url)
    try:
        queue = open_review_store(store, folder, max_items=10)

        assert not legacy.exists() and legacy.with_name("review.db.migrated").is_file()
        items, total = queue.list_open(10)
        assert total == 2
        assert [i.review_id for i in items] == ["rv-000000000000000c", "rv-000000000000000a"]
        first = queue.get("rv-000000000000000a")
        assert first.created_at == "2026-01-02T03:04:05.123+00:00"
        assert first.boxes == [BOX] and first.request_id == "req-a" and first.model_version == "2"
        assert queue.image("rv-000000000000000c") == (
            folder / "images" / "rv-000000000000000c.jpeg", "image/jpeg"
        )
        with pytest.raises(ReviewItemClosed, match="dismissed"):
            queue.get_open("rv-000000000000000b")
        # New items come after the imported ones; the next start imports nothing.
        newer = queue.add(_item(0.4), b"new")
        assert [i.review_id for i in queue.list_open(10)[0]][-1] == newer.review_id
        assert open_review_store(store, folder, max_items=10).open_count() == 3
    finally:
        store.dispose()


def test_a_store_that_has_items_only_renames_an_older_review_db(
    url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "review"
    store = Store(url)
    try:
        queue = ReviewStore(store, folder / "images", max_items=10)
        kept = queue.add(_item(), b"a")  # another replica was first
        legacy = legacy_review_db(tmp_path / "other")

        assert import_review_db(queue, legacy) == 0

        assert not legacy.exists() and legacy.with_name("review.db.migrated").is_file()
        assert [i.review_id for i in queue.list_open(10)[0]] == [kept.review_id]
        assert import_review_db(queue, legacy) == 0  # gone: nothing to do, no empty file made
        assert not legacy.exists()
    finally:
        store.dispose()
