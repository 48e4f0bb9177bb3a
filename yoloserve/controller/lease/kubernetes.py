"""The controller lease as a ``coordination.k8s.io/v1`` Lease (what Kubernetes controllers use).

Every change is a merge patch that carries the ``resourceVersion`` it read, so the API server
refuses it (409) when another candidate changed the Lease in between: one winner per round.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from yoloserve.errors import KubernetesError
from yoloserve.kube import KubeClient, KubeSettings, resource_path

API_VERSION = "coordination.k8s.io/v1"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.strptime(stamp.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class KubernetesLease:
    """One candidate for the Lease ``name`` in ``namespace``.

    Args:
        name, namespace: the Lease object.
        holder: this candidate's identity (the pod name).
        duration_s: ``leaseDurationSeconds``.
        settings, transport: the Kubernetes API (tests pass an ``httpx.MockTransport``).
    """

    def __init__(self, name: str, namespace: str | None, holder: str, duration_s: float,
                 settings: KubeSettings | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings or KubeSettings()
        self.namespace = namespace or self.settings.default_namespace()
        self.name, self.holder, self.duration_s = name, holder, duration_s
        self._transport = transport

    @property
    def _path(self) -> str:
        return resource_path(API_VERSION, "leases", self.namespace, self.name)

    def _spec(self, spec: dict[str, Any], *, taking: bool) -> dict[str, Any]:
        now = _now()
        fresh = {"holderIdentity": self.holder, "leaseDurationSeconds": int(self.duration_s),
                 "renewTime": now}
        if taking:
            fresh["acquireTime"] = now
            fresh["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        return fresh

    def try_acquire(self) -> bool:
        with KubeClient(self.settings, self._transport) as kube:
            try:
                lease = kube.get(self._path)
            except KubernetesError as exc:
                if exc.status != 404:
                    raise
                body = {"apiVersion": API_VERSION, "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec({}, taking=True)}
                return self._write(lambda: kube.create(resource_path(
                    API_VERSION, "leases", self.namespace), body))
            spec = lease.get("spec") or {}
            ours = spec.get("holderIdentity") == self.holder
            expired = (_seconds(spec.get("renewTime"))
                       + float(spec.get("leaseDurationSeconds") or 0)) < time.time()
            if not ours and not expired and spec.get("holderIdentity"):
                return False
            patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                     "spec": self._spec(spec, taking=not ours)}
            return self._write(lambda: kube.merge_patch(self._path, patch))

    def renew(self) -> bool:
        with KubeClient(self.settings, self._transport) as kube:
            lease = kube.get(self._path)
            if (lease.get("spec") or {}).get("holderIdentity") != self.holder:
                return False
            patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                     "spec": {"renewTime": _now()}}
            return self._write(lambda: kube.merge_patch(self._path, patch))

    def release(self) -> None:
        with KubeClient(self.settings, self._transport) as kube:
            lease = kube.get(self._path)
            if (lease.get("spec") or {}).get("holderIdentity") != self.holder:
                return
            patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                     "spec": {"holderIdentity": None}}
            self._write(lambda: kube.merge_patch(self._path, patch))

    @staticmethod
    def _write(call: Any) -> bool:
        try:
            call()
        except KubernetesError as exc:
            if exc.status == 409:  # another candidate wrote first: it won this round
                return False
            raise
        return True
