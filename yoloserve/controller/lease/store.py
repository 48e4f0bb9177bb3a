"""The controller lease as a row of the store (compose, ``make demo``, one host or several)."""

from __future__ import annotations

from yoloserve.store.engine import Store
from yoloserve.store.lease import StoreLease


def store_lease(store: Store, name: str, holder: str, duration_s: float) -> StoreLease:
    """A candidate for ``name`` in ``store`` (``StoreLease`` has the ``Lease`` interface)."""
    return StoreLease(store, name, holder, duration_s)
