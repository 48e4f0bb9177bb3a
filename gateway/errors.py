"""The one place where errors become HTTP answers.

Every non-2xx answer has the contract's shape ``{"error": {"code", "message", "request_id"}}``.
Domain errors (``yoloserve.errors``) map by class, most specific first:

======================================  ======  ==========================================
domain error                            status  note
======================================  ======  ==========================================
UnsupportedExportFormat                 422     a format there is no writer for
InvalidParameter, InvalidLabels, Input  400     DatasetInvalid too
Unauthorized                            401
Forbidden, AuthError                    403
NotFound (UnknownVersion, ...)          404     NoLabelsCollected too
Conflict (RetrainAlreadyRunning, ...)   409
PayloadTooLarge, ImageTooLarge          413
InvalidImage, UnsupportedImageFormat    415
ModelServerError                        502     model server answered off-contract
KubernetesError                         502     the Kubernetes API failed (KServe, Jobs)
TaskImageUnavailable                    502     a Label Studio task's image could not be fetched
ModelServerUnavailable, ModelNotReady   503     with Retry-After
EmbeddingsUnavailable                   503     with Retry-After (artifact may appear)
ModelServerTimeout                      504
RegistryError, other YoloServeError     500
======================================  ======  ==========================================

Request validation: a bad query/path/header value (wrong type, out of range) is a *bad field*,
400 ``invalid_parameter``; a body that does not match the schema (missing ``file`` part,
malformed labels JSON) is a *schema violation*, 422 ``validation_error``. Starlette's own
HTTP errors (unknown route 404, 405) keep their status with a snake_case code of the reason.
Anything unexpected is 500 ``internal_error``, logged with its traceback, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from yoloserve.errors import (
    AuthError,
    Conflict,
    EmbeddingsUnavailable,
    Forbidden,
    InputError,
    InvalidImage,
    InvalidLabels,
    InvalidParameter,
    KubernetesError,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    NotFound,
    PayloadTooLarge,
    RegistryError,
    TaskImageUnavailable,
    Unauthorized,
    UnsupportedExportFormat,
    YoloServeError,
)
from yoloserve.schemas import ErrorResponse

logger = logging.getLogger("gateway")

_STATUS_BY_ERROR: dict[type[YoloServeError], int] = {
    UnsupportedExportFormat: 422,
    InvalidParameter: 400,
    InvalidLabels: 400,
    InvalidImage: 415,
    PayloadTooLarge: 413,
    InputError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    AuthError: 403,
    NotFound: 404,
    Conflict: 409,
    ModelServerUnavailable: 503,
    ModelServerTimeout: 504,
    ModelServerError: 502,
    KubernetesError: 502,
    TaskImageUnavailable: 502,
    EmbeddingsUnavailable: 503,
    RegistryError: 500,
    YoloServeError: 500,
}
_LOCATIONS_OF_FIELDS = frozenset({"query", "path", "header", "cookie"})


def status_for(exc: YoloServeError) -> int:
    """HTTP status of a domain error: the entry of its nearest class in the table."""
    for cls in type(exc).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a contract-shaped error answer."""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    all_headers = {"X-Request-ID": request_id, **(headers or {})}
    return JSONResponse(body, status_code=status, headers=all_headers)


def domain_error_response(exc: YoloServeError, request_id: str, retry_after_s: int) -> JSONResponse:
    """Answer for a domain error; 503s tell the client when to retry."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 503:
        hint = getattr(exc, "retry_after_s", None)
        headers["Retry-After"] = str(hint or retry_after_s)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "ApiKey"
    return error_response(status, exc.code, exc.message, request_id, headers)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "unknown")


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, YoloServeError)
    if isinstance(exc, ModelServerError):
        request.app.state.metrics.model_server_errors.labels(code=exc.code).inc()
        logger.warning("model server error [%s] %s: %s", _request_id(request), exc.code, exc)
    retry_after_s = request.app.state.settings.retry_after_s
    return domain_error_response(exc, _request_id(request), retry_after_s)


def _describe(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(item) for item in error.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    in_fields = all(error.get("loc", ("body",))[0] in _LOCATIONS_OF_FIELDS for error in errors)
    if in_fields:
        return error_response(400, "invalid_parameter", _describe(errors), _request_id(request))
    return error_response(422, "validation_error", _describe(errors), _request_id(request))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "HTTP error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, message, _request_id(request), headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    logger.exception("unhandled error [%s] on %s %s", request_id, request.method, request.url.path)
    message = f"internal error; quote request id {request_id} when reporting it"
    return error_response(500, "internal_error", message, request_id)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler of this module on ``app``."""
    app.add_exception_handler(YoloServeError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting error answers of a route.

    Example:
        >>> sorted(error_responses(413, 503))
        [413, 503]
    """
    return {
        status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
        for status in statuses
    }
