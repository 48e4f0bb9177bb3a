"""Pure ASGI middleware: request ids, metrics, and the request body limit.

They are plain ASGI (not ``BaseHTTPMiddleware``) because the body limit must see every
``receive`` call, and because none of them should buffer a response. Order, outermost first::

    RequestIdMiddleware -> (CORS) -> MetricsMiddleware -> BodyLimitMiddleware -> FastAPI

so the 413 of the body limit is counted by the metrics and carries the request id.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import domain_error_response
from gateway.metrics import GatewayMetrics
from yoloserve.errors import PayloadTooLarge

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and plain: it ends up in logs and CSV files.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _state(scope: Scope) -> dict[str, Any]:
    return scope.setdefault("state", {})


def request_id_of(scope: Scope) -> str:
    """The request id the middleware gave this request (a fresh one if it did not run)."""
    state = _state(scope)
    if "request_id" not in state:
        state["request_id"] = uuid.uuid4().hex
    return str(state["request_id"])


class RequestIdMiddleware:
    """Give each request an id (the caller's ``X-Request-ID`` when valid) and echo it back.

    Also stamps the start time, so routes can report the total time of the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = _state(scope)
        state["request_id"] = request_id
        state["started_at"] = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class MetricsMiddleware:
    """Count requests and time them, labelled by route template (not raw path: bounded labels).

    The template is read from ``scope["route"]``, which routing sets; requests that matched no
    route are labelled ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    @staticmethod
    def _route_label(scope: Scope) -> str:
        route = scope.get("route")
        return str(getattr(route, "path_format", None) or getattr(route, "path", "unmatched"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            self.metrics.observe_request(
                self._route_label(scope), scope["method"], status, time.perf_counter() - started
            )


class BodyLimitMiddleware:
    """Answer 413 for request bodies over ``max_bytes``, without reading them.

    With a ``Content-Length`` over the limit, the first attempt to read the body fails before a
    byte is read. A body without one (chunked) is counted as it streams and reading stops once
    over the limit. Either way, whatever the app was about to answer is dropped and the 413 goes
    out instead. The app still routes the request first, so metrics know the route. Starlette's
    own ``RequestBodyLimitMiddleware`` works alike but answers plain text, not the contract's JSON.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, retry_after_s: int = 5, message: str | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.message = message or f"the request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        declared_too_large = declared.isdigit() and int(declared) > self.max_bytes
        received = 0
        exceeded = False
        message_413 = self.message

        async def receive_counting() -> Message:
            nonlocal received, exceeded
            if declared_too_large:
                exceeded = True
                raise PayloadTooLarge(message_413)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLarge(message_413)
            return message

        async def send_unless_exceeded(message: Message) -> None:
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, receive_counting, send_unless_exceeded)
        except Exception:
            # The body parser may wrap our error in its own; what matters is that we raised it.
            if not exceeded:
                raise
        if exceeded:
            response = domain_error_response(
                PayloadTooLarge(message_413), request_id_of(scope), self.retry_after_s
            )
            # The unread body would otherwise be taken as the next request on this connection.
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
