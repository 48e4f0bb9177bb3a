"""The store's lease: one holder at a time, renewals, a takeover once it expired, a release
that frees it at once; on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from yoloserve.store.engine import Store
from yoloserve.store.lease import StoreLease


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.sqlite(tmp_path / "yoloserve.db")
    return Store(request.getfixturevalue("postgres_url"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_holder_renews_and_another_takes_over_only_after_expiry(store: Store) -> None:
    clock = Clock()
    a = StoreLease(store, "controller", "a", 15.0, clock)
    b = StoreLease(store, "controller", "b", 15.0, clock)

    assert a.try_acquire() and not b.try_acquire()
    clock.now += 10
    assert a.renew() and not b.try_acquire()
    clock.now += 14  # 24 s after the start, 14 s after the renewal: still a's
    assert not b.try_acquire() and a.current_holder() == "a"
    clock.now += 2  # a stopped renewing 16 s ago: expired
    assert a.current_holder() is None
    assert b.try_acquire() and not a.renew(), "a learns it lost the lease"
    assert b.current_holder() == "b"


def test_a_release_frees_the_lease_at_once(store: Store) -> None:
    clock = Clock()
    a = StoreLease(store, "controller", "a", 15.0, clock)
    b = StoreLease(store, "controller", "b", 15.0, clock)
    assert a.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()
    b.release()  # twice: nothing happens
    assert StoreLease(store, "other-name", "c", 15.0, clock).try_acquire(), "names are apart"


def test_candidates_racing_for_a_free_lease_elect_one(store: Store) -> None:
    leases = [StoreLease(store, "controller", f"c{i}", 15.0) for i in range(8)]
    barrier = threading.Barrier(len(leases))
    won: list[str] = []

    def race(lease: StoreLease) -> None:
        barrier.wait()
        if lease.try_acquire():
            won.append(lease.holder)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
