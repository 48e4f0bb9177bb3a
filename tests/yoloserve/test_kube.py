"""``yoloserve.kube``: where the API server is, what is sent, how failures read (MockTransport)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import certifi
import httpx
import pytest

from yoloserve.errors import KubernetesError
from yoloserve.kube import MERGE_PATCH, AsyncKubeClient, KubeClient, KubeSettings, resource_path


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    """What Kubernetes mounts into a pod: token, CA bundle, namespace."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("header.payload.signature\n")
    (folder / "namespace").write_text("ml")
    shutil.copyfile(certifi.where(), folder / "ca.crt")  # any valid PEM bundle
    return folder


class Recorder:
    def __init__(self, status: int = 200, body: object = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.body = {"kind": "Thing"} if body is None else body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


def test_resource_paths() -> None:
    assert resource_path("v1", "configmaps", "ml", "t") == "/api/v1/namespaces/ml/configmaps/t"
    assert resource_path("batch/v1", "jobs", "ml") == "/apis/batch/v1/namespaces/ml/jobs"


def test_in_cluster_uses_the_service_account(
    service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.delenv("KUBE_API_URL", raising=False)
    settings = KubeSettings(service_account_dir=service_account)
    recorder = Recorder()
    with KubeClient(settings, httpx.MockTransport(recorder)) as kube:
        assert kube.get("/api/v1/namespaces/ml/configmaps/t") == {"kind": "Thing"}
    (request,) = recorder.requests
    assert str(request.url) == "https://10.96.0.1:6443/api/v1/namespaces/ml/configmaps/t"
    assert request.headers["authorization"] == "Bearer header.payload.signature"
    assert settings.default_namespace() == "ml"


def test_an_api_url_needs_no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBE_API_URL", "http://127.0.0.1:8001")  # kubectl proxy
    settings = KubeSettings(service_account_dir=tmp_path / "none")
    recorder = Recorder(body={"items": [{"metadata": {"name": "a"}}]})
    with KubeClient(settings, httpx.MockTransport(recorder)) as kube:
        items = kube.list_items("/apis/batch/v1/namespaces/ml/jobs", label_selector="a=b,c=d")
    assert items == [{"metadata": {"name": "a"}}]
    (request,) = recorder.requests
    assert request.url.host == "127.0.0.1" and "authorization" not in request.headers
    assert request.url.params["labelSelector"] == "a=b,c=d"
    assert settings.default_namespace() == "default"


def test_outside_a_cluster_without_a_url_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesError, match="KUBERNETES_SERVICE_HOST is unset"):
        KubeClient(KubeSettings(api_url=None)).__enter__()


async def test_patch_is_a_merge_patch_and_create_posts_json() -> None:
    recorder = Recorder()
    settings = KubeSettings(api_url="http://kube.test")
    async with AsyncKubeClient(settings, httpx.MockTransport(recorder)) as kube:
        await kube.merge_patch("/x", {"spec": {"a": None}})
        await kube.create("/y", {"kind": "Job"})
    patch, create = recorder.requests
    assert patch.method == "PATCH" and patch.headers["content-type"] == MERGE_PATCH
    assert json.loads(patch.content) == {"spec": {"a": None}}
    assert create.method == "POST" and create.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (httpx.Response(404, json={"kind": "Status", "message": 'jobs "x" not found'}), 404,
         'GET /x: 404 jobs "x" not found'),
        (httpx.Response(503, text="upstream connect error"), 503, "upstream connect error"),
        (httpx.Response(200, text="<html>"), None, "not JSON"),
        (httpx.Response(200, json=[1, 2]), None, "not an object"),
    ],
)
def test_failures_are_kubernetes_errors(
    answer: httpx.Response, status: int | None, message: str
) -> None:
    settings = KubeSettings(api_url="http://kube.test")
    with KubeClient(settings, httpx.MockTransport(lambda _: answer)) as kube:
        with pytest.raises(KubernetesError, match=message) as caught:
            kube.get("/x")
    assert caught.value.status == status and caught.value.code == "kubernetes_error"


async def test_an_unreachable_server_is_a_kubernetes_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    settings = KubeSettings(api_url="http://kube.test")
    async with AsyncKubeClient(settings, httpx.MockTransport(refuse)) as kube:
        with pytest.raises(KubernetesError, match="ConnectError") as caught:
            await kube.get("/x")
    assert caught.value.status is None
