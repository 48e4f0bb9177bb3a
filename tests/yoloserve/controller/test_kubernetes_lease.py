"""The controller lease as a coordination.k8s.io Lease, against a fake API server that keeps
the Lease and refuses a write whose resourceVersion is stale (409), as the real one does."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from yoloserve.controller.lease.kubernetes import KubernetesLease
from yoloserve.kube import KubeSettings

LEASES = "/apis/coordination.k8s.io/v1/namespaces/ml/leases"


class FakeApi:
    """One namespace's Leases with optimistic concurrency."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.writes = 0

    def _store(self, name: str, body: dict[str, Any]) -> httpx.Response:
        self.version += 1
        self.writes += 1
        body["metadata"] = {**body.get("metadata", {}), "name": name,
                            "resourceVersion": str(self.version)}
        self.leases[name] = body
        return httpx.Response(200, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == LEASES:
            body = json.loads(request.content)
            name = body["metadata"]["name"]
            if name in self.leases:
                return httpx.Response(409, json={"message": "already exists"})
            return self._store(name, body)
        name = path.rsplit("/", 1)[-1]
        if name not in self.leases:
            return httpx.Response(404, json={"message": "not found"})
        lease = self.leases[name]
        if request.method == "GET":
            return httpx.Response(200, json=lease)
        if request.method == "PATCH":
            patch = json.loads(request.content)
            if patch["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]:
                return httpx.Response(409, json={"message": "the object has been modified"})
            spec = {**lease["spec"], **patch.get("spec", {})}
            return self._store(name, {**lease, "spec": spec})
        return httpx.Response(405)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def lease(api: FakeApi, holder: str, duration_s: float = 15.0) -> KubernetesLease:
    return KubernetesLease("yoloserve-controller", "ml", holder, duration_s,
                           settings=KubeSettings(api_url="http://kube.test"),
                           transport=httpx.MockTransport(api))


def test_the_first_candidate_creates_the_lease_the_second_stands_by(api: FakeApi) -> None:
    a, b = lease(api, "controller-a"), lease(api, "controller-b")

    assert a.try_acquire()
    assert not b.try_acquire()
    spec = api.leases["yoloserve-controller"]["spec"]
    assert spec["holderIdentity"] == "controller-a" and spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 1
    assert a.renew() and not b.renew()


def test_an_expired_lease_is_taken_over_and_a_released_one_at_once(api: FakeApi) -> None:
    a, b = lease(api, "controller-a", duration_s=1), lease(api, "controller-b", duration_s=1)
    assert a.try_acquire()
    time.sleep(1.2)  # a stopped renewing: expired
    assert b.try_acquire()
    assert api.leases["yoloserve-controller"]["spec"]["leaseTransitions"] == 2
    assert not a.renew(), "a learns it lost the lease"
    b.release()
    assert a.try_acquire(), "released: no wait for the expiry"


def test_a_write_raced_by_another_candidate_loses(api: FakeApi) -> None:
    a, b = lease(api, "controller-a", duration_s=1), lease(api, "controller-b", duration_s=1)
    assert a.try_acquire()
    time.sleep(1.2)
    stale_get = api.__call__

    def racing(request: httpx.Request) -> httpx.Response:
        answer = stale_get(request)
        if request.method == "GET":  # b's read, then a renews before b writes
            api.leases["yoloserve-controller"]["metadata"]["resourceVersion"] = "changed"
        return answer

    b._transport = httpx.MockTransport(racing)
    assert not b.try_acquire(), "the stale resourceVersion is refused: b did not take it"
