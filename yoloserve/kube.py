"""A small Kubernetes API client over httpx: the calls of the KServe deployer and the Job launcher.

Why our own and not a library: both well-kept Python clients create their HTTP session inside
and take no transport. ``kr8s`` builds its ``httpx.AsyncClient`` in ``Api._create_session`` with
no transport argument (its source says ``TODO: make this injectable``), checks the server version
and walks API discovery (``/api``, ``/apis``, cached under ``~/.kube/cache``) before the first
custom-resource call; the official ``kubernetes`` client sends through a ``urllib3.PoolManager``
built in ``RESTClientObject`` and pulls in google-auth, requests-oauthlib and websocket-client.
Faking either at the HTTP level means a fake API server that also answers discovery and version
calls. We need five verbs on two resource kinds (get, list by label, create, JSON merge patch;
InferenceService, Job, ConfigMap), so this module sends them with httpx, like every other client
of the project, and tests fake it with ``httpx.MockTransport`` (style: "fake the network, not the
code"). It adds no dependency: the gateway image (``.[gateway]``) can run it as it is.

Where the API server is (``KubeSettings``, ``KUBE_*``):

- ``KUBE_API_URL`` set (``http://127.0.0.1:8001`` behind ``kubectl proxy``): that URL, no token.
- otherwise in-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the
  service account's token (``/var/run/secrets/kubernetes.io/serviceaccount/token``, re-read for
  every client: bound tokens rotate) and its CA bundle; its ``namespace`` file is the default
  namespace.

Errors: any failure is ``yoloserve.errors.KubernetesError`` with the API server's status code
(``status``; ``None`` when it could not be reached) and its ``Status`` message.

Example:
    >>> resource_path("serving.kserve.io/v1beta1", "inferenceservices", "ml", "yolo")
    '/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/yolo'
    >>> resource_path("v1", "configmaps", "ml")
    '/api/v1/namespaces/ml/configmaps'
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve.errors import KubernetesError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT_S = 30.0


class KubeSettings(BaseSettings):
    """Where the Kubernetes API is. Environment variables are ``KUBE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="KUBE_", extra="ignore")

    api_url: str | None = None
    service_account_dir: Path = SERVICE_ACCOUNT_DIR
    timeout_s: float = DEFAULT_TIMEOUT_S

    def default_namespace(self) -> str:
        """The pod's own namespace (in a cluster), else ``default``."""
        try:
            return (self.service_account_dir / "namespace").read_text().strip() or "default"
        except OSError:
            return "default"


def resource_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """The REST path of a namespaced resource (``v1`` is the core group, under ``/api``)."""
    base = "/api" if "/" not in api_version else "/apis"
    path = f"{base}/{api_version}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _connection(settings: KubeSettings) -> dict[str, Any]:
    """``httpx`` client arguments for the configured API server (read at call time)."""
    if settings.api_url:
        return {"base_url": settings.api_url}
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubernetesError(
            "no Kubernetes API: KUBERNETES_SERVICE_HOST is unset (not in a pod) and KUBE_API_URL "
            "is not set"
        )
    folder = settings.service_account_dir
    try:
        token = (folder / "token").read_text().strip()
    except OSError as exc:
        raise KubernetesError(f"no service account token in {folder}: {exc}") from exc
    ca = folder / "ca.crt"
    try:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
        )
    except ssl.SSLError as exc:
        raise KubernetesError(f"the service account CA {ca} cannot be read: {exc}") from exc
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return {
        "base_url": f"https://{host}:{port}",
        "headers": {"Authorization": f"Bearer {token}"},
        "verify": verify,
    }


def _error(method: str, path: str, response: httpx.Response) -> KubernetesError:
    try:
        body = response.json()
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    message = message or response.text[:300] or response.reason_phrase
    return KubernetesError(f"{method} {path}: {response.status_code} {message}",
                           status=response.status_code)


def _result(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        raise _error(method, path, response)
    try:
        body = response.json()
    except ValueError as exc:
        raise KubernetesError(f"{method} {path}: the answer is not JSON") from exc
    if not isinstance(body, dict):
        raise KubernetesError(f"{method} {path}: the answer is not an object")
    return body


def _request_args(
    method: str, body: dict[str, Any] | None, label_selector: str | None
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if body is not None:
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        args["content"] = json.dumps(body).encode()
        args["headers"] = {"Content-Type": content_type}
    if label_selector:
        args["params"] = {"labelSelector": label_selector}
    return args


class AsyncKubeClient:
    """The async client (the KServe deployer); use it as ``async with``.

    Args:
        settings: where the API server is; ``KubeSettings()`` (the environment) when None.
        transport: replaces the network (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self, settings: KubeSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or KubeSettings()
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AsyncKubeClient:
        self._http = httpx.AsyncClient(
            **_connection(self.settings), timeout=self.settings.timeout_s,
            transport=self._transport,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        label_selector: str | None = None,
    ) -> dict[str, Any]:
        if self._http is None:
            raise RuntimeError("use the client as `async with AsyncKubeClient() as kube:`")
        try:
            response = await self._http.request(
                method, path, **_request_args(method, body, label_selector)
            )
        except httpx.HTTPError as exc:
            raise KubernetesError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return _result(method, path, response)

    async def get(self, path: str) -> dict[str, Any]:
        """One object."""
        return await self._call("GET", path)

    async def list_items(
        self, path: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``items`` of a collection, optionally filtered by labels (``a=b,c=d``)."""
        return list((await self._call("GET", path, label_selector=label_selector))["items"])

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` a new object into a collection; answers it as stored."""
        return await self._call("POST", path, body)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386: ``None`` removes a field); answers the patched object."""
        return await self._call("PATCH", path, patch)


class KubeClient:
    """The blocking client (the Job launcher: it runs in the gateway's threadpool and in CLIs).

    Args:
        settings: where the API server is; ``KubeSettings()`` (the environment) when None.
        transport: replaces the network (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self, settings: KubeSettings | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings or KubeSettings()
        self._transport = transport
        self._http: httpx.Client | None = None

    def __enter__(self) -> KubeClient:
        self._http = httpx.Client(
            **_connection(self.settings), timeout=self.settings.timeout_s,
            transport=self._transport,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        label_selector: str | None = None,
    ) -> dict[str, Any]:
        if self._http is None:
            raise RuntimeError("use the client as `with KubeClient() as kube:`")
        try:
            response = self._http.request(
                method, path, **_request_args(method, body, label_selector)
            )
        except httpx.HTTPError as exc:
            raise KubernetesError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return _result(method, path, response)

    def get(self, path: str) -> dict[str, Any]:
        """One object."""
        return self._call("GET", path)

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """The ``items`` of a collection, optionally filtered by labels (``a=b,c=d``)."""
        return list(self._call("GET", path, label_selector=label_selector)["items"])

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` a new object into a collection; answers it as stored."""
        return self._call("POST", path, body)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386: ``None`` removes a field); answers the patched object."""
        return self._call("PATCH", path, patch)
