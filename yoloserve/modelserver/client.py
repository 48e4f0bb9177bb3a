"""Async client for TorchServe's inference and management APIs.

The client does not own its ``httpx.AsyncClient``: the service that uses it (the gateway's
lifespan, a retrain job) creates one, sets timeouts and connection limits on it, and closes it.
Every failure comes out as a domain error from :mod:`yoloserve.errors`, never as an httpx
exception, so callers map errors in one place:

- connect errors, dropped connections, TorchServe 503/507, 500 "Worker died" ->
  ``ModelServerUnavailable``
- default model not registered, or no worker -> ``ModelNotReady`` (a ``ModelServerUnavailable``)
- timeouts (read/write), TorchServe 408/504 -> ``ModelServerTimeout``
- 404 for a pinned version -> ``UnknownVersion``
- handler 415 ``invalid_image`` -> ``InvalidImage``; 413 -> ``ImageTooLarge``;
  400 -> ``InvalidParameter``
- anything else off-contract -> ``ModelServerBadResponse`` / ``ModelServerError``

Example:
    >>> import asyncio, httpx
    >>> def fake(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"status": "Healthy"})
    >>> async def main() -> bool:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
    ...         return await TorchServeClient(http).ping()
    >>> asyncio.run(main())
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from yoloserve.errors import (
    ImageTooLarge,
    InvalidImage,
    InvalidParameter,
    ModelNotReady,
    ModelServerBadResponse,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    UnknownVersion,
    VersionAlreadyRegistered,
)
from yoloserve.modelserver import MODEL_NAME

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8085"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8086"
# A request's thresholds, as serving/handler.py reads them from the request headers.
PARAM_HEADERS = {"conf": "X-Yolo-Conf", "iou": "X-Yolo-Iou", "max_det": "X-Yolo-Max-Det"}

# TorchServe describes a worker that finished loading its model as READY.
_LIVE_WORKER_STATUS = "READY"


def _seg(value: str) -> str:
    """Quote one URL path segment so a version string cannot reach another route."""
    return quote(value, safe="")


def _error_message(response: httpx.Response) -> str:
    """Extract a human message from a TorchServe or handler error body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and "message" in inner:
            return str(inner["message"])
        if "message" in body:
            return str(body["message"])
    return str(body)[:500]


def _handler_error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of a per-request handler error, if the body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    inner = body.get("error") if isinstance(body, Mapping) else None
    return str(inner.get("code")) if isinstance(inner, Mapping) else None


class TorchServeClient:
    """TorchServe inference + management API over a caller-owned ``httpx.AsyncClient``.

    Args:
        http: The client to send requests with; its timeouts apply unless a call overrides them.
        inference_url: Base URL of the inference API.
        management_url: Base URL of the management API.
        model_name: Model name used when a call does not name one.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        inference_url: str = DEFAULT_INFERENCE_URL,
        management_url: str = DEFAULT_MANAGEMENT_URL,
        model_name: str = MODEL_NAME,
    ) -> None:
        self._http = http
        self._inference = inference_url.rstrip("/")
        self._management = management_url.rstrip("/")
        self.model_name = model_name

    # --- inference ----------------------------------------------------------------------------

    async def predict(
        self,
        image_bytes: bytes,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Run detection on one image.

        Args:
            image_bytes: The encoded image (JPEG, PNG, WebP or BMP), sent as the request body.
            conf: Confidence threshold; the handler's default when None.
            iou: NMS IoU threshold; the handler's default when None.
            max_det: Maximum number of boxes; the handler's default when None.
            version: Pin a model version; the default version when None.

        Returns:
            The handler's JSON answer: ``model``, ``image``, ``boxes``, ``timing_ms``.

        Raises:
            InvalidImage: The handler could not decode the image.
            UnknownVersion: ``version`` is not registered.
            ModelServerError: Any model server failure (see the module docstring).
        """
        path = f"/predictions/{_seg(self.model_name)}"
        if version is not None:
            path += f"/{_seg(version)}"
        fields = {"conf": conf, "iou": iou, "max_det": max_det}
        # The raw image as the body, thresholds in headers: the frontend parses no multipart.
        headers = {"Content-Type": "application/octet-stream"}
        headers.update({PARAM_HEADERS[k]: str(v) for k, v in fields.items() if v is not None})
        response = await self._send(
            "POST", self._inference + path, content=image_bytes, headers=headers
        )
        if response.status_code == 404:
            if version is not None:
                raise UnknownVersion(f"model version {version!r} is not registered")
            raise ModelNotReady(f"model {self.model_name!r} is not registered on the model server")
        self._raise_for_status(response)
        body = self._json(response)
        if isinstance(body, dict) and isinstance(body.get("error"), Mapping):
            # A handler may report a per-request failure without setting the status.
            if body["error"].get("code") == "invalid_image":
                raise InvalidImage(str(body["error"].get("message", "")) or None)
            raise ModelServerError(_error_message(response), upstream_status=200)
        if not isinstance(body, dict) or "boxes" not in body:
            raise ModelServerBadResponse(
                f"handler answer has no 'boxes': {str(body)[:200]}", upstream_status=200
            )
        return body

    async def ping(self, timeout: float | None = None) -> bool:
        """Ask TorchServe's frontend whether it is healthy.

        Args:
            timeout: Overrides the client's timeout for this call (e.g. a short readiness probe).

        Returns:
            True when ``/ping`` answers 200 with status Healthy, False when it answers otherwise.

        Raises:
            ModelServerUnavailable: TorchServe cannot be reached.
            ModelServerTimeout: TorchServe did not answer in time.
        """
        response = await self._send("GET", self._inference + "/ping", timeout=timeout)
        if response.status_code != 200:
            return False
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError):
            return False
        return status == "Healthy"

    # --- management ---------------------------------------------------------------------------

    async def describe_model(
        self, name: str | None = None, version: str | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Describe a model's versions and workers.

        Args:
            name: Model name; the client's model when None.
            version: A version, ``"all"`` for every version, or None for the default version.
            timeout: Overrides the client's timeout for this call.

        Returns:
            TorchServe's list of model descriptions (``modelVersion``, ``workers``, ...).

        Raises:
            UnknownVersion: The model or that version is not registered.
            ModelServerError: Any other model server failure.
        """
        name = name or self.model_name
        path = f"/models/{_seg(name)}" + (f"/{_seg(version)}" if version else "")
        response = await self._send("GET", self._management + path, timeout=timeout)
        if response.status_code == 404:
            raise UnknownVersion(_error_message(response))
        self._raise_for_status(response)
        body = self._json(response)
        if not isinstance(body, list):
            raise ModelServerBadResponse("describe answer is not a list", upstream_status=200)
        return body

    async def has_live_worker(
        self, name: str | None = None, version: str | None = None, timeout: float | None = None
    ) -> bool:
        """Whether the model (its default version unless ``version``) has a READY worker.

        An unregistered model or version has no live worker: this returns False, it does not
        raise ``UnknownVersion``. Transport failures still raise.
        """
        try:
            described = await self.describe_model(name, version, timeout=timeout)
        except UnknownVersion:
            return False
        return self.live_workers(described) > 0

    @staticmethod
    def live_workers(described: list[dict[str, Any]]) -> int:
        """Count READY workers in a ``describe_model`` answer."""
        return sum(
            1
            for model in described
            for worker in model.get("workers") or []
            if isinstance(worker, Mapping) and worker.get("status") == _LIVE_WORKER_STATUS
        )

    async def register(
        self,
        url: str,
        model_name: str | None = None,
        initial_workers: int = 1,
        synchronous: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Register a ``.mar`` (a new version does not become the default by itself).

        Args:
            url: The archive, a file name in the model store or a URL.
            model_name: Name to register under; the client's model when None.
            initial_workers: Workers to start.
            synchronous: Wait until the workers are up before answering.
            timeout: Overrides the client's timeout (loading a model can take a while).

        Returns:
            TorchServe's answer, e.g. ``{"status": "Model \\"yolo\\" Version: 2 registered ..."}``.

        Raises:
            VersionAlreadyRegistered: That version of the model is already registered.
            ModelServerError: Any other failure, with TorchServe's message.
        """
        params = {
            "url": url,
            "model_name": model_name or self.model_name,
            "initial_workers": str(initial_workers),
            "synchronous": "true" if synchronous else "false",
        }
        response = await self._send(
            "POST", self._management + "/models", params=params, timeout=timeout
        )
        if response.status_code == 409:
            raise VersionAlreadyRegistered(_error_message(response))
        return self._management_result(response)

    async def set_default(self, name: str, version: str) -> dict[str, Any]:
        """Make ``version`` the version that unpinned predictions go to.

        Raises:
            UnknownVersion: The model or version is not registered.
            ModelServerError: Any other failure.
        """
        path = f"/models/{_seg(name)}/{_seg(version)}/set-default"
        return self._management_result(await self._send("PUT", self._management + path))

    async def unregister(self, name: str, version: str) -> dict[str, Any]:
        """Unregister one version of a model.

        Raises:
            UnknownVersion: The model or version is not registered.
            ModelServerError: Any other failure (TorchServe refuses to drop the default version
                while others exist, for instance).
        """
        path = f"/models/{_seg(name)}/{_seg(version)}"
        return self._management_result(await self._send("DELETE", self._management + path))

    # --- plumbing -----------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request, turning transport failures into domain errors."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            return await self._http.request(method, url, **kwargs, **extra)
        # Order matters: ConnectTimeout is a TimeoutException, but it means nobody is listening.
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ModelServerUnavailable(f"cannot connect to the model server: {exc}") from exc
        except httpx.PoolTimeout as exc:
            raise ModelServerUnavailable("too many requests in flight to the model server") from exc
        except httpx.TimeoutException as exc:
            raise ModelServerTimeout(f"the model server did not answer in time: {exc}") from exc
        except httpx.TransportError as exc:
            raise ModelServerUnavailable(f"the model server connection failed: {exc}") from exc

    def _management_result(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 404:
            raise UnknownVersion(_error_message(response))
        self._raise_for_status(response)
        body = self._json(response)
        return body if isinstance(body, dict) else {"result": body}

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError) as exc:
            raise ModelServerBadResponse(
                f"model server answered non-JSON: {response.text[:200]!r}",
                upstream_status=response.status_code,
            ) from exc

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        """Map a non-2xx TorchServe/handler answer to a domain error."""
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response)
        if status == 415 or _handler_error_code(response) == "invalid_image":
            raise InvalidImage(message)
        if status == 413:
            raise ImageTooLarge(f"the model server refused the upload size: {message}")
        if status == 400:
            raise InvalidParameter(message)
        if status in (503, 507):
            raise ModelServerUnavailable(message, upstream_status=status)
        if status == 500 and "worker died" in message.lower():
            # The worker holding the request stopped (a swap unloading it, a crash): no answer
            # was produced, so the request may go again, to whatever serves now.
            raise ModelServerUnavailable(f"the model server's worker stopped: {message}",
                                         upstream_status=status)
        if status in (408, 504):
            raise ModelServerTimeout(message, upstream_status=status)
        raise ModelServerError(f"model server answered {status}: {message}", upstream_status=status)
