"""What a lease is to the controller: take it, keep it, give it up."""

from __future__ import annotations

from typing import Protocol


class Lease(Protocol):
    """One candidate's handle on the controller lease."""

    holder: str
    duration_s: float

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours (renewing it then)."""
        ...

    def renew(self) -> bool:
        """Keep the lease; False when another holder took it meanwhile."""
        ...

    def release(self) -> None:
        """Give the lease up now, so a standby need not wait for it to expire."""
        ...
