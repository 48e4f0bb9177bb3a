"""Feedback rows and idempotency keys in the store (SQLite and PostgreSQL): one transaction per
feedback, gap-free positions, one winner per key, also under 32 threads and a second process."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from yoloserve.feedback.ledger import Committed, FeedbackLedger, KeyClaim, ProdRow
from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackRowRecord, IdempotencyKeyRow


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Every test runs on the embedded SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return Store.sqlite(tmp_path / "yoloserve.db")
    return Store(request.getfixturevalue("postgres_url"))


def rows(feedback_id: str, n: int) -> list[ProdRow]:
    return [ProdRow((0.5, -1.25), "circle", "square", "t", feedback_id, "r", "3", f"{i}.png")
            for i in range(n)]


def claim(key: str) -> KeyClaim:
    return KeyClaim(key, f"idem-{key}", "print")


def stored(store: Store) -> list[tuple[int, str]]:
    with store.read() as session:
        return [(r.id, r.feedback_id) for r in
                session.query(FeedbackRowRecord).order_by(FeedbackRowRecord.id)]


def test_rows_get_gap_free_positions_and_the_total(store: Store) -> None:
    ledger = FeedbackLedger(store)
    assert ledger.total() == 0
    assert ledger.commit(rows("a", 3)) == Committed(3, 3)
    assert ledger.commit(rows("b", 2)) == Committed(2, 5)
    assert ledger.commit([]) == Committed(0, 5)
    assert stored(store) == [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b")]
    assert ledger.total() == 5


def test_a_stored_key_is_found_and_stores_nothing_again(store: Store) -> None:
    ledger = FeedbackLedger(store)
    first = ledger.commit(rows("idem-k", 3), claim("k"), "3")
    again = ledger.commit(rows("idem-k", 3), claim("k"), "3")

    assert first == Committed(3, 3)
    assert again.rows_written == 0 and again.existing is not None
    assert (again.existing.rows_written, again.existing.prod_rows_total) == (3, 3)
    assert again.existing.body is None and again.existing.model_version == "3"
    assert len(stored(store)) == 3


def test_the_first_answer_wins(store: Store) -> None:
    ledger = FeedbackLedger(store)
    ledger.commit(rows("idem-k", 1), claim("k"), "3")

    assert ledger.answer("k", {"n": 1}) == {"n": 1}
    assert ledger.answer("k", {"n": 2}) == {"n": 1}
    found = ledger.find("k")
    assert found is not None and found.body == {"n": 1}
    assert ledger.wait_answered("k", 5.0) == found


def test_old_keys_are_pruned_by_a_writer(store: Store) -> None:
    now = [1000.0]
    ledger = FeedbackLedger(store, retention_s=60, prune_every_s=10, clock=lambda: now[0])
    ledger.commit(rows("idem-old", 1), claim("old"), "3")
    with store.write() as session:
        row = session.get(IdempotencyKeyRow, "old")
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(seconds=120)
    now[0] += 11
    ledger.commit(rows("idem-new", 1), claim("new"), "3")

    assert ledger.find("old") is None and ledger.find("new") is not None
    assert len(stored(store)) == 2, "rows stay; only the key is forgotten"


def _post(ledger: FeedbackLedger, i: int, acknowledged: list[tuple[str, Committed]]) -> None:
    key = f"shared-{(i // 2) % 6}" if i % 2 == 0 else f"own-{threading.get_ident()}-{i}"
    result = ledger.commit(rows(f"idem-{key}", 2), claim(key), "3")
    acknowledged.append((key, result))


def _post_in_process(url: str, start: int, count: int) -> None:
    ledger = FeedbackLedger(Store(url))
    done: list[tuple[str, Committed]] = []
    threads = [threading.Thread(target=_post, args=(ledger, i, done))
               for i in range(start, start + count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_keyed_feedback_is_stored_exactly_once(store: Store) -> None:
    """32 threads here and 16 in another process (its own Store); half share 6 keys."""
    ledger = FeedbackLedger(store)
    done: list[tuple[str, Committed]] = []
    other = multiprocessing.get_context("spawn").Process(
        target=_post_in_process, args=(store.url, 100, 16))
    other.start()
    threads = [threading.Thread(target=_post, args=(ledger, i, done)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.join(120)
    assert other.exitcode == 0

    ids = stored(store)
    assert [i for i, _ in ids] == list(range(1, len(ids) + 1)), "positions without gaps"
    by_feedback: dict[str, int] = {}
    for _, feedback_id in ids:
        by_feedback[feedback_id] = by_feedback.get(feedback_id, 0) + 1
    assert set(by_feedback.values()) == {2}, "every key's rows once"
    # Every key a thread here committed or replayed is stored, with the total of its commit.
    for key, result in done:
        assert by_feedback[f"idem-{key}"] == 2
        if result.existing is None:
            assert result.rows_written == 2
    winners = [r.prod_rows_total for _, r in done if r.existing is None]
    assert len(set(winners)) == len(winners), "each commit saw its own total"
    shared = {k for k in by_feedback if k.startswith("idem-shared-")}
    assert len(shared) == 6
    # 16 own keys here, 8 in the other process, 6 shared ones.
    assert len(ids) == 2 * (16 + 8 + 6)
