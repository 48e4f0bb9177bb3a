"""The transport: :class:`GatewayClient`, a small synchronous client of ``docs/api-contract.md``.

One method per route; each returns the dataclasses of :mod:`gateway_client.entities` and raises
only :class:`~gateway_client.errors.GatewayError` (see :mod:`gateway_client.errors` for the
tree), so a caller has a single place to turn a failure into a message.

Timeouts are short by default: an interactive caller blocks while a call runs, and a gateway
that does not accept a connection in two seconds is down, not slow. Batch callers pass longer
ones.

Tests fake the network, not this code: pass an ``httpx.MockTransport`` as ``transport``.

Example:
    >>> with GatewayClient("http://127.0.0.1:8080") as gw:  # doctest: +SKIP
    ...     prediction = gw.predict(open("cat.jpg", "rb").read(), "cat.jpg", "image/jpeg")
    ...     [box.name for box in prediction.boxes]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from gateway_client.entities import (
    FeedbackResult,
    LabelBox,
    ModelsInfo,
    Prediction,
    RetrainJob,
    ReviewQueue,
)
from gateway_client.errors import (
    GatewayError,
    GatewayUnreachable,
    JobFailed,
    error_from_response,
)

T = TypeVar("T")


class GatewayClient:
    """Calls the gateway; raises :class:`GatewayError` for anything but a usable answer.

    Args:
        base_url: Gateway base URL, e.g. ``http://127.0.0.1:8080``.
        api_key: Sent as ``X-API-Key`` on write routes (feedback, and admin routes unless
            ``admin_key`` is given).
        admin_key: Sent as ``X-API-Key`` on admin routes (retrain, activate); ``None`` sends
            ``api_key`` there too.
        timeout_s: Overall limit of one call, in seconds.
        connect_timeout_s: Limit to open a connection, in seconds.
        transport: An httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._admin_key = admin_key
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def _write_headers(self) -> dict[str, str]:
        return {"X-API-Key": self._api_key} if self._api_key else {}

    def _admin_headers(self) -> dict[str, str]:
        key = self._admin_key or self._api_key
        return {"X-API-Key": key} if key else {}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; map transport failures and non-2xx answers to GatewayError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectTimeout:
            raise GatewayUnreachable(
                None,
                "gateway_unreachable",
                f"The gateway at {self.base_url} did not accept a connection within "
                f"{self._connect_timeout_s:g} s. Is it running?",
            ) from None
        except httpx.TimeoutException:
            raise GatewayUnreachable(
                None,
                "gateway_timeout",
                f"The gateway at {self.base_url} did not answer {method} {path} within "
                f"{self._timeout_s:g} s.",
            ) from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise GatewayUnreachable(
                None,
                "gateway_unreachable",
                f"Cannot reach the gateway at {self.base_url} ({reason}). Is it running?",
            ) from None
        if not response.is_success:
            raise error_from_response(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise GatewayError(
                response.status_code,
                "invalid_response",
                f"The gateway answered {response.request.url.path} with a body that is not JSON.",
            ) from None

    def _parse(self, response: httpx.Response, parse: Callable[[Any], T]) -> T:
        """Apply ``parse`` to the JSON body; a body of the wrong shape becomes a GatewayError."""
        data = self._json(response)
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GatewayError(
                response.status_code,
                "invalid_response",
                f"The gateway answered {response.request.url.path} with an unexpected body "
                f"({type(exc).__name__}: {exc}).",
            ) from None

    def health(self) -> dict[str, Any]:
        """``GET /health``: succeeds while the gateway process is alive."""
        response = self._send("GET", "/health")
        try:
            body = response.json()
        except ValueError:
            body = None  # the contract only promises a 200, not a body
        return body if isinstance(body, dict) else {}

    def models(self) -> ModelsInfo:
        """``GET /models``: versions, the serving one, and the class names."""
        return self._parse(self._send("GET", "/models"), ModelsInfo.from_json)

    def predict(
        self,
        image: bytes,
        filename: str,
        content_type: str,
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        version: str | None = None,
    ) -> Prediction:
        """``POST /predict`` with one image; options left at ``None`` use the gateway's default.

        Returns:
            The parsed answer, with ``round_trip_ms`` measured here (upload + server + download).
        """
        params: dict[str, str | int | float] = {}
        if conf is not None:
            params["conf"] = conf
        if iou is not None:
            params["iou"] = iou
        if max_det is not None:
            params["max_det"] = max_det
        if version:
            params["version"] = version
        started = time.perf_counter()
        response = self._send(
            "POST", "/predict", params=params, files={"file": (filename, image, content_type)}
        )
        round_trip_ms = (time.perf_counter() - started) * 1000.0
        header = response.headers.get("X-Model-Version")
        return self._parse(
            response,
            lambda data: Prediction.from_json(
                data, round_trip_ms=round_trip_ms, version_header=header
            ),
        )

    def feedback(
        self,
        image: bytes,
        filename: str,
        content_type: str,
        boxes: Sequence[LabelBox],
        *,
        request_id: str | None = None,
        review_id: str | None = None,
    ) -> FeedbackResult:
        """``POST /feedback``: the same image and its ground truth as the user corrected it.

        An empty ``boxes`` is meaningful ("nothing to detect here") and is sent as such.
        ``review_id`` names the review-queue item these labels answer (it closes it).
        """
        labels: dict[str, Any] = {"boxes": [b.to_json() for b in boxes]}
        if request_id:
            labels["request_id"] = request_id
        if review_id:
            labels["review_id"] = review_id
        response = self._send(
            "POST",
            "/feedback",
            files={"file": (filename, image, content_type)},
            data={"labels": json.dumps(labels)},
            headers=self._write_headers(),
        )
        return self._parse(response, FeedbackResult.from_json)

    def activate(
        self, version: str, *, wait: bool = True, timeout_s: float = 300.0, poll_s: float = 0.5
    ) -> RetrainJob:
        """``POST /models/{version}/activate``: make ``version`` the default (rollback).

        The gateway answers 202 with an ``activate`` job that the controller carries out; with
        ``wait`` this follows it (``GET /jobs/{job_id}``) until it ends.

        Raises:
            JobFailed: the job ended ``failed`` (the previous version keeps serving).
            GatewayError: the request was refused (404 unknown version, 409 rejected), or the
                job did not end within ``timeout_s`` (code ``job_timeout``).
        """
        response = self._send(
            "POST", f"/models/{quote(version, safe='')}/activate", headers=self._admin_headers()
        )
        job = self._parse(response, RetrainJob.from_json)
        return self.wait_job(job.job_id, timeout_s=timeout_s, poll_s=poll_s) if wait else job

    def job(self, job_id: str) -> RetrainJob:
        """``GET /jobs/{job_id}``: where any job (retrain, activation) stands."""
        response = self._send("GET", f"/jobs/{quote(job_id, safe='')}")
        return self._parse(response, RetrainJob.from_json)

    def wait_job(self, job_id: str, *, timeout_s: float = 300.0, poll_s: float = 0.5) -> RetrainJob:
        """Follow a job until it ends; raise ``JobFailed`` if it failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job.finished:
                if job.state == "failed":
                    raise JobFailed(None, "job_failed", job.reason or f"job {job_id} failed")
                return job
            if time.monotonic() >= deadline:
                raise GatewayError(None, "job_timeout",
                                   f"job {job_id} is still {job.state} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def retrain(self) -> RetrainJob:
        """``POST /retrain``: start a retrain now (409 when one is already running)."""
        response = self._send("POST", "/retrain", headers=self._admin_headers())
        return self._parse(response, RetrainJob.from_json)

    def retrain_status(self, job_id: str) -> RetrainJob:
        """``GET /retrain/{job_id}``: where a retrain job stands."""
        response = self._send("GET", f"/retrain/{quote(job_id, safe='')}")
        return self._parse(response, RetrainJob.from_json)

    def review(self, limit: int = 20) -> ReviewQueue:
        """``GET /review``: open review items, highest priority first, and how many are open."""
        response = self._send("GET", "/review", params={"limit": limit})
        return self._parse(response, ReviewQueue.from_json)

    def review_image(self, image_url: str) -> bytes:
        """The stored image of a review item (its ``image_url``, a gateway path)."""
        return self._send("GET", image_url).content

    def dismiss(self, review_id: str) -> None:
        """``POST /review/{review_id}/dismiss``: drop an item without labelling it."""
        self._send(
            "POST", f"/review/{quote(review_id, safe='')}/dismiss", headers=self._write_headers()
        )
