"""A small synchronous client of the gateway's public contract (``docs/api-contract.md``).

Every failure surfaces as one exception type, so the UI has a single place to turn it into a
message:

    GatewayError(status, code, message)   no usable 2xx answer; ``status`` is the HTTP status,
     |                                    ``code``/``message`` come from the contract's error JSON
     +-- GatewayUnreachable               no HTTP answer at all (connection refused, DNS, timeout);
                                          ``status`` is ``None``

Timeouts are short on purpose: the UI blocks while a call runs, and a gateway that does not
accept a connection in two seconds is down, not slow.

Tests fake the network, not this code: set :data:`TRANSPORT` to an ``httpx.MockTransport`` and
every client that :func:`make_client` builds sends its requests there.

Example:
    >>> with GatewayClient("http://127.0.0.1:8080") as gw:  # doctest: +SKIP
    ...     prediction = gw.predict(open("cat.jpg", "rb").read(), "cat.jpg", "image/jpeg")
    ...     [box.name for box in prediction.boxes]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from webapp.config import Settings

#: Test hook: when set, clients built by :func:`make_client` send requests through it.
TRANSPORT: httpx.BaseTransport | None = None

T = TypeVar("T")

#: Longest piece of a non-JSON error body repeated to the user (an HTML error page is noise).
_MAX_BODY_ECHO = 200


class GatewayError(Exception):
    """The gateway could not be used for a request.

    Attributes:
        status: HTTP status of the answer, ``None`` when there was no answer.
        code: Stable snake_case code (the contract's ``error.code``, or one of ours such as
            ``gateway_unreachable``, ``gateway_timeout``, ``invalid_response``, ``http_<status>``).
        message: A sentence for a human.
        request_id: The gateway's request id, when it sent one (helps find the log line).
        retry_after: The ``Retry-After`` header of a 503, when present.
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        text = f"{self.message} [{self.code}, {where}]"
        if self.retry_after:
            text += f" Retry after {self.retry_after} s."
        return text


class GatewayUnreachable(GatewayError):
    """No HTTP answer came back: the gateway is down, unreachable or did not answer in time."""


@dataclass(frozen=True)
class Box:
    """One detection, in the original image's pixel coordinates."""

    xyxy: tuple[float, float, float, float]
    conf: float
    cls: int
    name: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Box:
        """Parse a box of the ``/predict`` answer."""
        x1, y1, x2, y2 = (float(v) for v in data["xyxy"])
        return cls((x1, y1, x2, y2), float(data["conf"]), int(data["cls"]), str(data["name"]))


@dataclass(frozen=True)
class LabelBox:
    """One ground-truth box sent as feedback: where the object is and what it is."""

    xyxy: tuple[float, float, float, float]
    name: str

    def to_json(self) -> dict[str, Any]:
        """The contract's ``{"xyxy": [...], "name": ...}`` form."""
        return {"xyxy": [round(v, 2) for v in self.xyxy], "name": self.name}


@dataclass(frozen=True)
class Prediction:
    """The ``/predict`` answer plus the round trip the client measured."""

    request_id: str | None
    model_name: str
    model_version: str
    width: int
    height: int
    boxes: list[Box]
    timing_ms: dict[str, float]
    round_trip_ms: float

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, round_trip_ms: float, version_header: str | None = None
    ) -> Prediction:
        """Parse the ``/predict`` body; the ``X-Model-Version`` header backs up the body."""
        model = data.get("model") or {}
        return cls(
            request_id=data.get("request_id"),
            model_name=str(model.get("name", "")),
            model_version=str(model.get("version") or version_header or "?"),
            width=int(data["image"]["width"]),
            height=int(data["image"]["height"]),
            boxes=[Box.from_json(b) for b in data["boxes"]],
            timing_ms={str(k): float(v) for k, v in (data.get("timing_ms") or {}).items()},
            round_trip_ms=round_trip_ms,
        )


@dataclass(frozen=True)
class FeedbackResult:
    """The ``/feedback`` answer."""

    feedback_id: str | None
    rows_written: int
    prod_rows_total: int
    retrain_triggered: bool
    job_id: str | None
    next_at_rows: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackResult:
        """Parse the ``201`` body of ``POST /feedback``."""
        retrain = data.get("retrain") or {}
        next_at = retrain.get("next_at_rows")
        return cls(
            feedback_id=data.get("feedback_id"),
            rows_written=int(data["rows_written"]),
            prod_rows_total=int(data["prod_rows_total"]),
            retrain_triggered=bool(retrain.get("triggered", False)),
            job_id=retrain.get("job_id"),
            next_at_rows=int(next_at) if next_at is not None else None,
        )


@dataclass(frozen=True)
class ModelVersion:
    """One entry of ``GET /models``'s ``versions``."""

    version: str
    status: str | None
    created_at: str | None
    parent: str | None
    metrics: dict[str, float]
    trained_on: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Parse one version entry; everything but ``version`` may be missing."""
        parent = data.get("parent")
        return cls(
            version=str(data["version"]),
            status=data.get("status"),
            created_at=data.get("created_at"),
            parent=str(parent) if parent is not None else None,
            metrics={
                str(k): float(v) for k, v in (data.get("metrics") or {}).items() if v is not None
            },
            trained_on=dict(data.get("trained_on") or {}),
        )


@dataclass(frozen=True)
class ModelsInfo:
    """The ``GET /models`` answer."""

    name: str
    default_version: str | None
    classes: list[str]
    versions: list[ModelVersion]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelsInfo:
        """Parse the ``GET /models`` body."""
        default = data.get("default_version")
        return cls(
            name=str(data.get("name", "")),
            default_version=str(default) if default is not None else None,
            classes=[str(c) for c in data["classes"]],
            versions=[ModelVersion.from_json(v) for v in data["versions"]],
        )


@dataclass(frozen=True)
class RetrainJob:
    """A retrain job, as ``POST /retrain`` and ``GET /retrain/{job_id}`` describe it."""

    job_id: str
    state: str | None
    started_at: str | None = None
    finished_at: str | None = None
    candidate_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrainJob:
        """Parse a job; only ``job_id`` is required (``POST /retrain`` may say little more)."""
        candidate = data.get("candidate_version")
        return cls(
            job_id=str(data["job_id"]),
            state=data.get("state"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            candidate_version=str(candidate) if candidate is not None else None,
            metrics=dict(data.get("metrics") or {}),
            reason=data.get("reason"),
        )


def _as_dict(data: Any) -> dict[str, Any]:
    """Accept a JSON object whatever its keys (answers the contract leaves open)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _error_from_response(response: httpx.Response) -> GatewayError:
    """Turn a non-2xx answer into a :class:`GatewayError`, reading the contract's error JSON."""
    status = response.status_code
    retry_after = response.headers.get("Retry-After")
    header_id = response.headers.get("X-Request-ID")
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return GatewayError(
            status,
            str(error["code"]),
            str(error.get("message") or response.reason_phrase),
            request_id=error.get("request_id") or header_id,
            retry_after=retry_after,
        )
    # Not the contract's shape (a proxy's HTML page, a framework default): still say something.
    if isinstance(body, dict) and "detail" in body:
        detail = json.dumps(body["detail"])[:_MAX_BODY_ECHO]
    else:
        detail = response.text.strip()[:_MAX_BODY_ECHO]
    message = response.reason_phrase or "Error"
    if detail:
        message = f"{message}: {detail}"
    return GatewayError(
        status, f"http_{status}", message, request_id=header_id, retry_after=retry_after
    )


class GatewayClient:
    """Calls the gateway; raises :class:`GatewayError` for anything but a usable answer.

    Args:
        base_url: Gateway base URL, e.g. ``http://127.0.0.1:8080``.
        api_key: Sent as ``X-API-Key`` on write routes (feedback, retrain, activate).
        timeout_s: Overall limit of one call, in seconds.
        connect_timeout_s: Limit to open a connection, in seconds.
        transport: An httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
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
            raise _error_from_response(response)
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
    ) -> FeedbackResult:
        """``POST /feedback``: the same image and its ground truth as the user corrected it.

        An empty ``boxes`` is meaningful ("nothing to detect here") and is sent as such.
        """
        labels: dict[str, Any] = {"boxes": [b.to_json() for b in boxes]}
        if request_id:
            labels["request_id"] = request_id
        response = self._send(
            "POST",
            "/feedback",
            files={"file": (filename, image, content_type)},
            data={"labels": json.dumps(labels)},
            headers=self._write_headers(),
        )
        return self._parse(response, FeedbackResult.from_json)

    def activate(self, version: str) -> dict[str, Any]:
        """``POST /models/{version}/activate``: make ``version`` the default (rollback)."""
        response = self._send(
            "POST", f"/models/{quote(version, safe='')}/activate", headers=self._write_headers()
        )
        return self._parse(response, _as_dict)

    def retrain(self) -> RetrainJob:
        """``POST /retrain``: start a retrain now (409 when one is already running)."""
        response = self._send("POST", "/retrain", headers=self._write_headers())
        return self._parse(response, RetrainJob.from_json)

    def retrain_status(self, job_id: str) -> RetrainJob:
        """``GET /retrain/{job_id}``: where a retrain job stands."""
        response = self._send("GET", f"/retrain/{quote(job_id, safe='')}")
        return self._parse(response, RetrainJob.from_json)


def make_client(settings: Settings, *, timeout_s: float | None = None) -> GatewayClient:
    """Build a client from the settings, through :data:`TRANSPORT` when a test set one.

    Args:
        settings: Where the gateway is, its key and the default time limits.
        timeout_s: A tighter overall limit for this client (e.g. a health probe).
    """
    return GatewayClient(
        settings.gateway_url,
        api_key=settings.api_key,
        timeout_s=settings.timeout_s if timeout_s is None else min(timeout_s, settings.timeout_s),
        connect_timeout_s=settings.connect_timeout_s,
        transport=TRANSPORT,
    )
