"""``POST /models/{version}/activate``: a hot swap through a scripted TorchServe management API,
or, with ``DEPLOY_BACKEND=kserve``, a patch of a fake cluster's InferenceService."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.embeddings import EmbeddingBackend
from gateway.main import create_app
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error
from tests.yoloserve.modelserver.rollout.test_kserve import ROOT as KSERVE_ROOT
from tests.yoloserve.modelserver.rollout.test_kserve import FakeCluster
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.rollout.base import DeploySettings
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store

CLASSES = ["circle", "square", "triangle"]
ADMIN = {"X-API-Key": "admin-key"}


class FakeManagement:
    """TorchServe's management API for model ``yolo``, with state: loaded versions, default."""

    def __init__(self, loaded: list[str], default: str) -> None:
        self.loaded = list(loaded)
        self.default = default
        self.calls: list[str] = []
        self.register_status = 200

    def _describe(self, version: str) -> dict[str, Any]:
        return {
            "modelName": "yolo",
            "modelVersion": version,
            "workers": [{"id": "9000", "status": "READY"}],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/models":
            if self.register_status != 200:
                return httpx.Response(self.register_status, json={"message": "load failed"})
            match = re.fullmatch(r"yolo_v(\d+)\.mar", request.url.params["url"])
            assert match, request.url
            self.loaded.append(match.group(1))
            return httpx.Response(200, json={"status": "registered"})
        if request.method == "GET" and len(parts) == 2:
            return httpx.Response(200, json=[self._describe(self.default)])
        version = parts[2] if len(parts) > 2 else ""
        if request.method == "GET" and version == "all":
            return httpx.Response(200, json=[self._describe(v) for v in self.loaded])
        if version not in self.loaded:
            return httpx.Response(404, json={"code": 404, "message": f"no version {version}"})
        if request.method == "GET":
            return httpx.Response(200, json=[self._describe(version)])
        if request.method == "PUT" and parts[-1] == "set-default":
            self.default = version
            return httpx.Response(200, json={"status": "default set"})
        if request.method == "DELETE":
            self.loaded.remove(version)
            return httpx.Response(200, json={"status": "unregistered"})
        return httpx.Response(405, json={"message": "unexpected call"})


@pytest.fixture
def registry(settings: Settings) -> Registry:
    """Version 1 serving, version 2 ready (a rollback target), version 3 rejected."""
    registry = Registry(open_store(settings.store.url))
    for version, digit in (("1", "1"), ("2", "2"), ("3", "3")):
        registry.add_version(
            sha256=digit * 64, mar=f"yolo_v{version}.mar", classes=CLASSES, version=version
        )
    registry.set_status("3", "rejected")
    return registry


@pytest.fixture
def management(fake_ts: FakeTorchServe) -> FakeManagement:
    fake = FakeManagement(loaded=["1"], default="1")
    fake_ts.management = fake
    return fake


@pytest.fixture
def admin_client(build_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    app = build_app(
        api_keys=["user-key"],
        admin_api_keys=["admin-key"],
        swap_drain_s=0.0,
        swap_worker_timeout_s=2.0,
        swap_wait_s=2.0,
    )
    with TestClient(app) as client:
        yield client


def test_activate_swaps_the_default_without_a_gap(
    admin_client: TestClient, management: FakeManagement, registry: Registry
) -> None:
    response = admin_client.post("/models/2/activate", headers=ADMIN)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "2"
    assert body["status"] == "serving"
    data = registry.load()
    assert data.default_version == "2"
    assert data.get("1").status == "ready"
    # The new version was loaded and made default before the old one was unloaded.
    calls = management.calls
    assert calls.index("POST /models") < calls.index("PUT /models/yolo/2/set-default")
    assert calls.index("PUT /models/yolo/2/set-default") < calls.index("DELETE /models/yolo/1")
    assert management.loaded == ["2"] and management.default == "2"
    assert admin_client.get("/models").json()["default_version"] == "2"


def test_activate_unknown_version_is_404(
    admin_client: TestClient, management: FakeManagement, registry: Registry
) -> None:
    assert_error(admin_client.post("/models/9/activate", headers=ADMIN), 404, "unknown_version")
    assert management.calls == []


def test_activate_rejected_version_is_a_conflict(
    admin_client: TestClient, management: FakeManagement, registry: Registry
) -> None:
    response = admin_client.post("/models/3/activate", headers=ADMIN)

    assert_error(response, 409, "version_rejected")
    assert management.calls == []
    assert registry.load().default_version == "1"


def test_failed_load_keeps_the_old_version_serving(
    admin_client: TestClient, management: FakeManagement, registry: Registry
) -> None:
    management.register_status = 500

    response = admin_client.post("/models/2/activate", headers=ADMIN)

    assert_error(response, 502, "model_server_error")
    assert registry.load().default_version == "1"
    assert management.default == "1" and management.loaded == ["1"]


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "unauthorized"), ("user-key", 403, "forbidden")],
)
def test_activate_needs_the_admin_key(
    admin_client: TestClient,
    management: FakeManagement,
    registry: Registry,
    key: str | None,
    status: int,
    code: str,
) -> None:
    headers = {"X-API-Key": key} if key else {}
    assert_error(admin_client.post("/models/2/activate", headers=headers), status, code)
    assert management.calls == []
    assert registry.load().default_version == "1"


def test_activate_malformed_version_is_400(admin_client: TestClient) -> None:
    response = admin_client.post("/models/..%20x/activate", headers=ADMIN)
    assert_error(response, 400, "invalid_parameter")


def _kserve_app(
    settings: Settings, cluster: FakeCluster, loader: Callable[[], EmbeddingBackend],
    **changes: Any,
) -> FastAPI:
    deploy = DeploySettings(
        backend="kserve", kserve_namespace="ml", kserve_storage_root=KSERVE_ROOT,
        kserve_layout_dir=None, ready_timeout_s=2.0, poll_s=0.01,
    ).model_copy(update=changes)
    # One fake network: the lifespan's transport reaches the Kubernetes API too.
    return create_app(settings, transport=httpx.MockTransport(cluster),
                      embedder_loader=loader,
                      retrain_settings=RetrainSettings(), deploy_settings=deploy)


def test_with_kserve_activate_moves_the_inference_service(
    settings: Settings, registry: Registry, monkeypatch: pytest.MonkeyPatch,
    fake_embedder_loader: Callable[[], EmbeddingBackend],
) -> None:
    monkeypatch.setenv("KUBE_API_URL", "http://kube.test")
    cluster = FakeCluster(f"{KSERVE_ROOT}/v1")
    with TestClient(_kserve_app(settings, cluster, fake_embedder_loader)) as client:
        response = client.post("/models/2/activate")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "serving"
        again = client.post("/models/2/activate")  # already serving: no patch
        assert again.status_code == 200
    assert cluster.serving_uri() == f"{KSERVE_ROOT}/v2"
    assert len(cluster.patches) == 1
    assert registry.load().default_version == "2"


def test_with_kserve_an_api_failure_is_502(
    settings: Settings, registry: Registry, monkeypatch: pytest.MonkeyPatch,
    fake_embedder_loader: Callable[[], EmbeddingBackend],
) -> None:
    monkeypatch.setenv("KUBE_API_URL", "http://kube.test")
    cluster = FakeCluster(f"{KSERVE_ROOT}/v1")
    with TestClient(_kserve_app(settings, cluster, fake_embedder_loader,
                                       kserve_name="absent")) as client:
        assert_error(client.post("/models/2/activate"), 502, "kubernetes_error")
    assert registry.load().default_version == "1"
