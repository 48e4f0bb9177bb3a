"""What a call to the gateway raises: one base class, so a caller has one place to catch.

The tree::

    GatewayError(status, code, message)   no usable 2xx answer; ``status`` is the HTTP status,
     |                                    ``code``/``message`` come from the contract's error JSON
     +-- GatewayUnreachable               no HTTP answer at all (connection refused, DNS, timeout);
                                          ``status`` is ``None``

:func:`error_from_response` reads a non-2xx answer into a :class:`GatewayError`: the contract's
``{"error": {"code", "message", "request_id"}}`` when the gateway sent it, something readable
otherwise (a proxy's HTML page, a framework default).

Example:
    >>> import httpx
    >>> body = {"error": {"code": "unknown_job", "message": "No job r-9.", "request_id": "a1"}}
    >>> str(error_from_response(httpx.Response(404, json=body)))
    'No job r-9. [unknown_job, HTTP 404]'
"""

from __future__ import annotations

import json

import httpx

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


class JobFailed(GatewayError):
    """A job the gateway accepted (an activation) ended ``failed``; ``message`` is its reason."""


class GatewayUnreachable(GatewayError):
    """No HTTP answer came back: the gateway is down, unreachable or did not answer in time."""


def error_from_response(response: httpx.Response) -> GatewayError:
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
