"""``gateway.review.store``: restart survival, bounds (lowest priority evicted), closing once,
pruned tombstones, image files following the rows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.review.store import NewItem, ReviewStore
from yoloserve.errors import ReviewItemClosed, UnknownReviewItem

BOX = {"xyxy": [1.0, 2.0, 30.0, 40.0], "conf": 0.3, "cls": 0, "name": "circle"}


def _item(priority: float = 0.5, reason: str = "uncertain", ext: str = "png") -> NewItem:
    return NewItem(reason, priority, "3", "req-1", 64, 48, [BOX], ext)


def _images(store: ReviewStore) -> set[str]:
    return {p.name for p in store.images.iterdir() if not p.name.startswith(".")}


def test_an_item_and_its_image_survive_a_restart(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10)
    added = store.add(_item(), b"image-bytes")
    store.close_db()

    again = ReviewStore(tmp_path, max_items=10)
    (item,), total = again.list_open(20)

    assert total == 1
    assert item == added
    assert item.boxes == [BOX] and item.status == "open"
    path, media_type = again.image(item.review_id)
    assert path.read_bytes() == b"image-bytes" and media_type == "image/png"


def test_items_are_listed_by_priority_then_age(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10)
    low = store.add(_item(0.2), b"a")
    high = store.add(_item(0.9), b"b")
    low_later = store.add(_item(0.2), b"c")

    items, _ = store.list_open(20)

    assert [i.review_id for i in items] == [high.review_id, low.review_id, low_later.review_id]


def test_past_the_bound_the_lowest_priority_then_the_oldest_is_evicted(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=2)
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


def test_a_new_item_weaker_than_a_full_queue_is_evicted_at_once(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=1)
    strong = store.add(_item(0.9), b"a")
    weak = store.add(_item(0.1), b"b")
    assert weak.status == "evicted"
    assert [i.review_id for i in store.list_open(5)[0]] == [strong.review_id]


def test_close_once_then_conflict_and_unknown_ids(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10)
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


def test_of_concurrent_closes_exactly_one_wins(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10)
    item = store.add(_item(), b"a")
    outcomes: list[str] = []

    def close() -> None:
        try:
            store.close(item.review_id, "dismissed")
            outcomes.append("closed")
        except ReviewItemClosed:
            outcomes.append("conflict")

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["closed"] + ["conflict"] * 7


def test_two_stores_on_one_folder_share_the_queue(tmp_path: Path) -> None:
    # Two gateway processes: each has its own connection to the same database.
    first, second = ReviewStore(tmp_path, max_items=10), ReviewStore(tmp_path, max_items=10)
    item = first.add(_item(), b"a")
    second.close(item.review_id, "dismissed")
    with pytest.raises(ReviewItemClosed):
        first.close(item.review_id, "labelled")


def test_the_oldest_closed_rows_are_pruned(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10, max_closed=2)
    ids = []
    for _ in range(4):
        item = store.add(_item(), b"a")
        store.close(item.review_id, "dismissed")
        ids.append(item.review_id)
    store.add(_item(), b"b")  # pruning happens when an item is added

    with pytest.raises(UnknownReviewItem):
        store.get(ids[0])
    assert store.get(ids[-1]).status == "dismissed"


@pytest.mark.parametrize(
    ("ext", "media_type", "raises"),
    [("png", "image/png", False), ("jpeg", "image/jpeg", False), ("webp", "image/webp", False),
     ("bmp", "image/bmp", False), ("gif", None, True), ("../x", None, True)],
)
def test_only_known_image_types_are_stored(
    tmp_path: Path, ext: str, media_type: str | None, raises: bool
) -> None:
    store = ReviewStore(tmp_path, max_items=10)
    if raises:
        with pytest.raises(ValueError):
            store.add(_item(ext=ext), b"a")
        assert store.open_count() == 0
    else:
        item = store.add(_item(ext=ext), b"a")
        assert store.image(item.review_id)[1] == media_type


def test_an_item_whose_image_vanished_is_unknown_not_a_crash(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, max_items=10)
    item = store.add(_item(), b"a")
    (store.images / item.image_file).unlink()
    with pytest.raises(UnknownReviewItem, match="missing"):
        store.image(item.review_id)


def test_building_a_store_creates_no_file(tmp_path: Path) -> None:
    ReviewStore(tmp_path / "review", max_items=10)
    assert not (tmp_path / "review").exists()
