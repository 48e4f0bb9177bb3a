"""yoloserve.files.GroupCommit: concurrent submits share commits, each gets its own result, a
failed commit fails its batch only, and commits never overlap."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from yoloserve.files import GroupCommit


class Recorder:
    """A commit that doubles its items, slowly, and checks it never runs twice at once."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.active = 0
        self.overlapped = False
        self.fail_on = fail_on
        self._guard = threading.Lock()

    def __call__(self, batch: list[int]) -> list[int]:
        with self._guard:
            self.active += 1
            self.overlapped |= self.active > 1
        try:
            time.sleep(0.01)  # an fsync: the time others queue up in
            self.batches.append(list(batch))
            if self.fail_on in batch:
                raise OSError("disk full")
            return [2 * item for item in batch]
        finally:
            with self._guard:
                self.active -= 1


def test_one_submit_is_one_commit() -> None:
    commit = Recorder()
    group = GroupCommit(commit)
    assert [group.submit(1), group.submit(2)] == [2, 4]
    assert commit.batches == [[1], [2]]


def test_concurrent_submits_share_commits_and_get_their_own_results() -> None:
    commit = Recorder()
    group = GroupCommit(commit)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(group.submit, range(64)))

    assert results == [2 * i for i in range(64)]
    assert sorted(i for batch in commit.batches for i in batch) == list(range(64))
    assert len(commit.batches) < 64, "some submits shared a commit"
    assert not commit.overlapped


def test_a_failed_commit_fails_its_batch_and_the_next_batch_commits() -> None:
    commit = Recorder(fail_on=5)
    group = GroupCommit(commit)

    def submit(i: int) -> int | str:
        try:
            return group.submit(i)
        except OSError as exc:
            return str(exc)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(32)))

    failed_batch = next(b for b in commit.batches if 5 in b)
    assert all(results[i] == "disk full" for i in failed_batch)
    assert all(results[i] == 2 * i for i in range(32) if i not in failed_batch)
    assert group.submit(100) == 200


def test_a_commit_must_answer_every_item() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda batch: [])
    with pytest.raises(RuntimeError, match="0 results for 1"):
        group.submit(1)
