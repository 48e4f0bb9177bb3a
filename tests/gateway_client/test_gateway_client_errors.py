"""``gateway_client.errors``: how every failure of a call becomes a GatewayError."""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway_client import GatewayClient, GatewayError, GatewayUnreachable
from gateway_client.errors import error_from_response
from tests.gateway_client.fake_gateway import (
    BASE,
    PREDICT_BODY,
    answer,
    client_for,
    error_response,
    raising,
)


@pytest.mark.parametrize(
    ("response", "status", "code", "in_message", "retry_after"),
    [
        (
            error_response(415, "unsupported_media_type", "Not a supported image."),
            415,
            "unsupported_media_type",
            "Not a supported image.",
            None,
        ),
        (
            error_response(503, "model_unavailable", "No live worker.", **{"Retry-After": "5"}),
            503,
            "model_unavailable",
            "No live worker.",
            "5",
        ),
        (
            error_response(409, "retrain_running", "A retrain is already running."),
            409,
            "retrain_running",
            "already running",
            None,
        ),
        (
            httpx.Response(502, text="<html><body>Bad gateway from nginx</body></html>"),
            502,
            "http_502",
            "Bad Gateway: <html>",
            None,
        ),
        (
            httpx.Response(422, json={"detail": [{"msg": "field required"}]}),
            422,
            "http_422",
            "field required",
            None,
        ),
        (httpx.Response(500), 500, "http_500", "Internal Server Error", None),
        (
            httpx.Response(404, json={"error": {"message": "no code"}}),
            404,
            "http_404",
            "Not Found",
            None,
        ),
    ],
    ids=["contract-415", "contract-503", "contract-409", "html", "fastapi-detail", "empty", "odd"],
)
def test_error_answers_map_to_gateway_error(
    response: httpx.Response, status: int, code: str, in_message: str, retry_after: str | None
) -> None:
    with pytest.raises(GatewayError) as info, client_for(answer(response)) as gw:
        gw.models()
    err = info.value
    assert not isinstance(err, GatewayUnreachable)
    assert (err.status, err.code, err.retry_after) == (status, code, retry_after)
    assert in_message in err.message
    assert f"HTTP {status}" in str(err)


def test_contract_error_keeps_request_id() -> None:
    with (
        pytest.raises(GatewayError) as info,
        client_for(answer(error_response(413, "x", "y"))) as gw,
    ):
        gw.models()
    assert info.value.request_id == "req-err"


def test_request_id_header_backs_up_a_body_without_one() -> None:
    response = httpx.Response(500, text="oops", headers={"X-Request-ID": "req-h"})
    assert error_from_response(response).request_id == "req-h"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "gateway_unreachable"),
        (httpx.ConnectTimeout("timed out"), "gateway_unreachable"),
        (httpx.ReadTimeout("timed out"), "gateway_timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "gateway_unreachable"),
    ],
    ids=["refused", "connect-timeout", "read-timeout", "disconnected"],
)
def test_transport_failures_map_to_unreachable(exc: Exception, code: str) -> None:
    with pytest.raises(GatewayUnreachable) as info, client_for(raising(exc)) as gw:
        gw.health()
    assert info.value.status is None
    assert info.value.code == code
    assert BASE in info.value.message
    assert "no answer" in str(info.value)


def test_real_connection_refused_is_unreachable() -> None:
    # A port that was free a moment ago: nothing listens, the kernel refuses at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GatewayUnreachable) as info:
        with GatewayClient(f"http://127.0.0.1:{port}", connect_timeout_s=1.0) as gw:
            gw.health()
    assert info.value.code == "gateway_unreachable"
    assert f"127.0.0.1:{port}" in info.value.message


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"boxes": []}),
        httpx.Response(200, json={**PREDICT_BODY, "boxes": [{"xyxy": [1, 2], "conf": 1}]}),
        httpx.Response(200, json=["a", "list"]),
    ],
    ids=["not-json", "no-image", "short-box", "list"],
)
def test_unexpected_success_body_is_invalid_response(response: httpx.Response) -> None:
    with pytest.raises(GatewayError) as info, client_for(answer(response)) as gw:
        gw.predict(b"img", "a.png", "image/png")
    assert (info.value.status, info.value.code) == (200, "invalid_response")
    assert "/predict" in info.value.message
