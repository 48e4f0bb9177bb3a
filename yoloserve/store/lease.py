"""A named lease in the store: who may act, for how long, and a takeover when the holder dies.

One row per name (``leases``): the holder, and until when it holds (wall-clock seconds). A holder
renews well before the end; a holder that died stops renewing and anyone may take the lease once
it expired. Every change is one write transaction serialised on the lease's name, so two
candidates never both win. Holders on several hosts compare their own clocks with the stored
expiry: keep their clocks in sync (NTP) and the duration well above the skew.

Example:
    >>> lease = StoreLease(Store("sqlite:////tmp/example-lease.db"), "demo", "me", 10.0)
    >>> lease.try_acquire()
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from yoloserve.store.engine import Store
from yoloserve.store.tables import LeaseRow


class StoreLease:
    """One candidate for the lease ``name``.

    Args:
        store: the store the lease lives in.
        name: what the lease guards (``controller``, ``swap:yolo``).
        holder: this candidate's identity (unique per process).
        duration_s: how long an acquisition or renewal holds without another renewal.
        clock: wall-clock seconds (tests pass their own).
    """

    def __init__(self, store: Store, name: str, holder: str, duration_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.name, self.holder = store, name, holder
        self.duration_s, self.clock = duration_s, clock

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours (then renew it)."""
        with self.store.write(f"lease:{self.name}") as session:
            row = session.get(LeaseRow, self.name, with_for_update=True)
            now = self.clock()
            if row is None:
                session.add(LeaseRow(name=self.name, holder=self.holder,
                                     expires_at=now + self.duration_s,
                                     acquired_at=datetime.now(UTC), transitions=1))
                return True
            if row.holder != self.holder and row.expires_at > now:
                return False
            if row.holder != self.holder:
                row.holder, row.transitions = self.holder, row.transitions + 1
                row.acquired_at = datetime.now(UTC)
            row.expires_at = now + self.duration_s
            return True

    def renew(self) -> bool:
        """Extend the lease if we still hold it; False when another took it meanwhile."""
        with self.store.write(f"lease:{self.name}") as session:
            row = session.get(LeaseRow, self.name, with_for_update=True)
            if row is None or row.holder != self.holder:
                return False
            row.expires_at = self.clock() + self.duration_s
            return True

    def release(self) -> None:
        """Give the lease up at once (a standby need not wait for the expiry)."""
        with self.store.write(f"lease:{self.name}") as session:
            row = session.get(LeaseRow, self.name, with_for_update=True)
            if row is not None and row.holder == self.holder:
                row.expires_at = 0.0

    def current_holder(self) -> str | None:
        """Who holds the lease now (None: nobody, or it expired)."""
        with self.store.read() as session:
            row = session.get(LeaseRow, self.name)
        if row is None or row.expires_at <= self.clock():
            return None
        return row.holder
