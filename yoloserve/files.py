"""Durable file writes shared by the registry, the embedder artifact and the feedback store.

A reader (another service, or the retrain job listing images) must see the old file or the new
one, never half of one, and an acknowledged write must survive a crash.

:class:`GroupCommit` lets concurrent appenders share one fsync (a group commit): the
acknowledgement still comes only after the data is on disk, but 32 writers no longer queue for
32 fsyncs one after the other behind a file lock.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, temp_suffix: str = "", sync_dir: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Args:
        path: Target file; its folder must exist.
        data: The whole new content.
        temp_suffix: Suffix of the temporary name (e.g. ``.tmp`` keeps it out of image listings).
        sync_dir: Also fsync the folder, so the rename itself survives a crash.
    """
    # Same folder as the target: os.replace is atomic only within one filesystem.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=temp_suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other services (and users) read these files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


class _Slot(Generic[T, R]):
    """One submitted item: its result or error, and the event its thread waits on."""

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to commit the next batch, not with a result
        self.wake = threading.Event()

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set by the batch's commit


class GroupCommit(Generic[T, R]):
    """Run ``commit(batch)`` for items that concurrent threads submit, as many per call as queued.

    One thread at a time is the leader: it takes everything queued (its own item first, in
    submit order), calls ``commit`` once, hands each thread its result (or the batch's error),
    and passes the lead to the first thread that queued meanwhile. ``commit`` therefore never runs
    twice at once, and a caller returns only once its item's batch was committed: with an fsync
    at the end of ``commit``, a returned append is on disk, and N concurrent appends cost one
    fsync instead of N in a row.

    Args:
        commit: Takes a batch of items, returns one result per item, in order; raises to fail
            the whole batch (every item of it gets the error).

    Example:
        >>> group = GroupCommit(lambda batch: [len(x) for x in batch])
        >>> group.submit("abc")
        3
    """

    def __init__(self, commit: Callable[[list[T]], Sequence[R]]) -> None:
        self._commit = commit
        self._guard = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        """Commit ``item`` with whatever else is queued; its result once the batch is done."""
        slot: _Slot[T, R] = _Slot(item)
        with self._guard:
            self._queue.append(slot)
            follower, self._leading = self._leading, True
        if follower:
            slot.wake.wait()
            if not slot.lead:
                return slot.outcome()
        with self._guard:
            batch, self._queue = self._queue, []
        try:
            results = list(self._commit([s.item for s in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"commit returned {len(results)} results for {len(batch)}")
            for s, result in zip(batch, results, strict=True):
                s.result = result
        except BaseException as exc:
            for s in batch:
                s.error = exc
        with self._guard:
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
            else:
                self._leading = False
        for s in batch:
            s.wake.set()
        if successor is not None:
            successor.wake.set()
        return slot.outcome()
