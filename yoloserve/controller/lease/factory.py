"""The one place that picks the controller's lease from ``CONTROLLER_LEASE_BACKEND``."""

from __future__ import annotations

from yoloserve.controller.lease.base import Lease
from yoloserve.controller.lease.kubernetes import KubernetesLease
from yoloserve.controller.lease.store import store_lease
from yoloserve.controller.settings import ControllerSettings
from yoloserve.store.engine import Store


def lease_from_settings(settings: ControllerSettings, store: Store) -> Lease:
    """The lease this controller competes for."""
    if settings.lease_backend == "kubernetes":
        return KubernetesLease(settings.lease_name, settings.lease_namespace, settings.id,
                               settings.lease_duration_s)
    return store_lease(store, settings.lease_name, settings.id, settings.lease_duration_s)
