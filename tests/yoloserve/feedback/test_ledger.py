"""Feedback rows and idempotency keys in the store (SQLite and PostgreSQL): rows and key in one
transaction, concurrent feedbacks sharing one (a failing one alone), gap-free positions, one
winner per key, also under 32 threads and a second process."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

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


def _queue_behind_a_writer(store: Store, ledger: FeedbackLedger, jobs: list[tuple[str, Any]],
                           results: dict[str, Committed | Exception]) -> None:
    """Start one thread per (key, settle) while this thread holds the store's feedback lock,
    wait until all but the first (which waits for the lock, leading its own commit) are queued
    behind it, then let them go."""

    def post(key: str, settle: Any) -> None:
        try:
            results[key] = ledger.commit(rows(f"idem-{key}", 2), claim(key), "3", settle)
        except Exception as exc:  # noqa: BLE001 - the test looks at each outcome
            results[key] = exc

    threads = [threading.Thread(target=post, args=job) for job in jobs]
    with store.write(lock="feedback"):
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(ledger._queue) < len(jobs) - 1:  # noqa: SLF001 - what the test waits for
            assert time.monotonic() < deadline, "the writers never queued"
            time.sleep(0.01)
    for t in threads:
        t.join(60)


def test_feedbacks_that_arrive_during_a_commit_share_the_next_transaction(store: Store) -> None:
    ledger = FeedbackLedger(store)
    commits: list[int] = []
    event.listen(store._write_engine, "commit", lambda _c: commits.append(1))  # noqa: SLF001
    results: dict[str, Committed | Exception] = {}
    _queue_behind_a_writer(store, ledger, [(f"k{i}", None) for i in range(12)], results)
    # The holder's own (empty) transaction, the first feedback's, then one for the other 11.
    assert len(commits) == 3
    totals = sorted(r.prod_rows_total for r in results.values() if isinstance(r, Committed))
    assert totals == list(range(2, 25, 2)), "each feedback its own gap-free positions"
    assert [i for i, _ in stored(store)] == list(range(1, 25))


def test_a_failing_feedback_fails_alone_and_its_batch_is_stored(store: Store) -> None:
    ledger = FeedbackLedger(store)

    def broken(_written: int, _total: int) -> dict[str, Any] | None:
        raise RuntimeError("this feedback's answer cannot be built")

    results: dict[str, Committed | Exception] = {}
    jobs: list[tuple[str, Any]] = [(f"k{i}", None) for i in range(6)]
    jobs.insert(3, ("bad", broken))
    _queue_behind_a_writer(store, ledger, jobs, results)
    assert isinstance(results.pop("bad"), RuntimeError)
    assert all(isinstance(r, Committed) and r.rows_written == 2 for r in results.values())
    assert ledger.find("bad") is None
    assert {f for _, f in stored(store)} == {f"idem-k{i}" for i in range(6)}
    assert ledger.total() == 12


def test_an_answer_known_in_the_commit_is_stored_with_the_key(store: Store) -> None:
    ledger = FeedbackLedger(store)
    seen: list[tuple[int, int]] = []

    def settle(written: int, total: int) -> dict[str, Any] | None:
        seen.append((written, total))
        return {"feedback_id": "idem-a", "rows_written": written, "prod_rows_total": total}

    committed = ledger.commit(rows("idem-a", 3), claim("a"), "3", settle)
    assert seen == [(3, 3)]
    assert committed.body == {"feedback_id": "idem-a", "rows_written": 3, "prod_rows_total": 3}
    found = ledger.find("a")
    assert found is not None and found.body == committed.body
    # An answer that must wait (settle gives None) leaves the key "stored", without a body.
    later = ledger.commit(rows("idem-b", 1), claim("b"), "3", lambda _w, _t: None)
    assert later.body is None
    waiting = ledger.find("b")
    assert waiting is not None and waiting.body is None
    # A replay of an answered key returns that body and stores nothing.
    again = ledger.commit(rows("idem-a", 3), claim("a"), "3", settle)
    assert again.existing is not None and again.existing.body == committed.body
    assert seen == [(3, 3)] and ledger.total() == 4
