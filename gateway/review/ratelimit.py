"""At most ``n`` admissions into the review queue per sliding minute, for all replicas together.

Each admission is a row of the store (``review_admissions``, wall-clock seconds). An admission
counts the rows of the last minute and adds its own in one write transaction serialised on the
store's ``review:admissions`` lock, so replicas never both take the last place; rows that left
the window are pruned by the same transaction. The replicas compare their own clocks with the
stored times: keep them in sync (NTP); a skew of a second only shifts the window.

Example:
    >>> import pathlib, tempfile
    >>> store = Store.sqlite(pathlib.Path(tempfile.mkdtemp()) / "yoloserve.db")
    >>> clock = iter([0.0, 1.0, 2.0, 61.5]).__next__
    >>> limiter = RateLimiter(store, 2, clock=clock)
    >>> [limiter.try_acquire() for _ in range(4)]
    [True, True, False, True]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, func, select

from yoloserve.store.engine import Store
from yoloserve.store.tables import ReviewAdmissionRow

WINDOW_S = 60.0
LOCK = "review:admissions"


class RateLimiter:
    """A sliding-window limit: the queue must not fill with one burst of traffic.

    Args:
        store: The store every replica shares (the budget is the store's, not the process's).
        per_minute: Admissions allowed in any 60 s window.
        clock: Wall-clock seconds (tests pass their own).
    """

    def __init__(
        self, store: Store, per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self._clock = clock

    def has_room(self) -> bool:
        """Whether an admission now would pass (a read, checked before any costly work)."""
        now = self._clock()
        with self.store.read() as session:
            count = session.scalar(
                select(func.count()).where(ReviewAdmissionRow.admitted_at > now - WINDOW_S)
            )
        return int(count or 0) < self.per_minute

    def try_acquire(self) -> bool:
        """Admit one if the window has room; True when admitted."""
        with self.store.write(LOCK) as session:
            now = self._clock()
            session.execute(
                delete(ReviewAdmissionRow).where(ReviewAdmissionRow.admitted_at <= now - WINDOW_S)
            )
            count = session.scalar(select(func.count()).select_from(ReviewAdmissionRow))
            if int(count or 0) >= self.per_minute:
                return False
            session.add(ReviewAdmissionRow(admitted_at=now))
            return True
