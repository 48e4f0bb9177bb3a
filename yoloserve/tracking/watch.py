"""Keep MLflow in step with the registry from a long-lived process (the trainer service).

The gateway changes the registry too (``POST /models/{v}/activate``) but never imports mlflow;
the trainer notices the versions changed (``Registry.versions_signature``) on its next idle
turn and syncs, so the alias
``champion`` follows activations within a poll. After a failed sync (MLflow down) it retries
every ``retry_s`` until one succeeds: that is how an outage is repaired without anyone running
``make mlflow-sync``.
"""

from __future__ import annotations

import time
from pathlib import Path

from yoloserve.modelserver.registry import Registry
from yoloserve.tracking import mirror
from yoloserve.tracking.settings import TrackingSettings


class MirrorWatch:
    """Sync when the registry file changed since the last good sync, or retry after a failure."""

    def __init__(self, registry: Registry, run_dir: Path,
                 settings: TrackingSettings | None = None, retry_s: float = 30.0) -> None:
        self.registry, self.run_dir = registry, run_dir
        self.settings = settings or TrackingSettings()
        self.retry_s = retry_s
        self._synced: str | None = None
        self._next_try = 0.0

    def _signature(self) -> str | None:
        return self.registry.versions_signature()

    def poll(self) -> bool:
        """Sync if needed; True when a sync ran and succeeded."""
        if not self.settings.enabled:
            return False
        signature = self._signature()
        if signature is None or signature == self._synced or time.monotonic() < self._next_try:
            return False
        report = mirror.sync_quietly(self.registry, self.settings, self.run_dir)
        if report is None:
            self._next_try = time.monotonic() + self.retry_s
            return False
        self._synced = self._signature()  # a sync may write run ids into the registry
        return True
