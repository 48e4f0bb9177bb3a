"""``/health`` and ``/ready``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.gateway.fake_torchserve import FakeTorchServe, assert_error
from tests.support import store_settings
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import open_store


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


def test_health_is_200_even_when_torchserve_is_down(
    client: TestClient, fake_ts: FakeTorchServe
) -> None:
    fake_ts.ping = fake_ts.predict = fake_ts.management = _refused
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert fake_ts.requests == []


def test_ready_when_the_default_model_has_a_live_worker(
    client: TestClient, fake_ts: FakeTorchServe
) -> None:
    response = client.get("/ready")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "model": {"name": "yolo", "version": "3"},
        "live_workers": 1,
    }
    describe = [r for r in fake_ts.requests if r.url.port == 8086]
    assert [r.url.path for r in describe] == ["/models/yolo"]


def test_not_ready_when_torchserve_is_down(client: TestClient, fake_ts: FakeTorchServe) -> None:
    fake_ts.ping = _refused
    response = client.get("/ready")
    error = assert_error(response, 503, "model_server_unavailable")
    assert "ping" in error["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_not_ready_when_ping_times_out(client: TestClient, fake_ts: FakeTorchServe) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    fake_ts.ping = slow
    assert_error(client.get("/ready"), 503, "model_server_unavailable")  # 503, not 504


def test_not_ready_when_torchserve_is_unhealthy(
    client: TestClient, fake_ts: FakeTorchServe
) -> None:
    fake_ts.ping = lambda request: httpx.Response(500, json={"status": "Unhealthy"})
    assert (
        "unhealthy"
        in assert_error(client.get("/ready"), 503, "model_server_unavailable")["message"]
    )


def test_not_ready_without_a_live_worker(client: TestClient, fake_ts: FakeTorchServe) -> None:
    described = [{"modelName": "yolo", "modelVersion": "3", "workers": [{"status": "UNLOADING"}]}]
    fake_ts.management = lambda request: httpx.Response(200, json=described)
    error = assert_error(client.get("/ready"), 503, "model_not_ready")
    assert "no live worker" in error["message"]


def test_not_ready_when_the_model_is_not_registered(
    client: TestClient, fake_ts: FakeTorchServe
) -> None:
    fake_ts.management = lambda request: httpx.Response(
        404, json={"code": 404, "type": "ModelNotFoundException", "message": "Model not found"}
    )
    assert "not registered" in assert_error(client.get("/ready"), 503, "model_not_ready")["message"]


def _registry_with_default(path: Path) -> str:
    registry = Registry(open_store(store_settings(path).url))
    for n in (1, 2):
        record = registry.add_version(sha256=f"{n:02d}" * 32, mar=f"yolo_v{n}.mar",
                                      classes=["circle"])
    registry.set_default(record.version)
    return record.version


def test_ready_by_ping_asks_no_management_api(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe, tmp_path: Path
) -> None:
    # On KServe the management API stays inside the predictor pod: /ping and the registry only.
    fake_ts.management = _refused
    default = _registry_with_default(tmp_path)
    with TestClient(build_app(readiness="ping", store=store_settings(tmp_path))) as client:
        response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready", "model": {"name": "yolo", "version": default}, "live_workers": None,
    }
    assert [r.url.path for r in fake_ts.requests] == ["/ping"]


def test_ready_by_ping_needs_a_healthy_ping_and_a_default_version(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe, tmp_path: Path
) -> None:
    with TestClient(build_app(readiness="ping", store=store_settings(tmp_path))) as client:
        error = assert_error(client.get("/ready"), 503, "model_not_ready")
        assert "no default version" in error["message"]
        fake_ts.ping = lambda request: httpx.Response(200, json={"status": "Partial Healthy"})
        assert_error(client.get("/ready"), 503, "model_server_unavailable")
