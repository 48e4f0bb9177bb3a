"""What a client of the gateway sees when TorchServe fails, end to end over the fake network."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.fake_torchserve import FakeTorchServe, assert_error


def _raise(exc: Exception):  # noqa: ANN202 - a responder
    def responder(request: httpx.Request) -> httpx.Response:
        raise exc

    return responder


def _answer(status: int, body: object):  # noqa: ANN202 - a responder
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("responder", "params", "status", "code"),
    [
        (_raise(httpx.ConnectError("refused")), {}, 503, "model_server_unavailable"),
        (_raise(httpx.ConnectTimeout("no SYN-ACK")), {}, 503, "model_server_unavailable"),
        (_raise(httpx.ReadTimeout("slow")), {}, 504, "model_server_timeout"),
        (_raise(httpx.RemoteProtocolError("closed")), {}, 503, "model_server_unavailable"),
        (
            _answer(404, {"code": 404, "message": "Model version: 9 does not exist"}),
            {"version": "9"},
            404,
            "unknown_version",
        ),
        (
            _answer(404, {"code": 404, "message": "Model not found: yolo"}),
            {},
            503,
            "model_not_ready",
        ),
        (
            _answer(415, {"error": {"code": "invalid_image", "message": "cannot decode"}}),
            {},
            415,
            "invalid_image",
        ),
        (
            _answer(400, {"error": {"code": "invalid_parameter", "message": "iou"}}),
            {},
            400,
            "invalid_parameter",
        ),
        (_answer(413, {"code": 413, "message": "too big"}), {}, 413, "image_too_large"),
        (_answer(503, {"code": 503, "message": "no worker"}), {}, 503, "model_server_unavailable"),
        (_answer(507, {"code": 507, "message": "no memory"}), {}, 503, "model_server_unavailable"),
        (_answer(500, {"code": 500, "message": "handler failed"}), {}, 502, "model_server_error"),
        (_answer(200, {"unexpected": True}), {}, 502, "model_server_bad_response"),
        (
            _answer(200, {"model": {"name": "yolo"}, "boxes": [{"xyxy": [1, 2]}]}),
            {},
            502,
            "model_server_bad_response",
        ),
    ],
    ids=[
        "connect-error",
        "connect-timeout",
        "read-timeout",
        "dropped",
        "unknown-version",
        "model-missing",
        "handler-415",
        "handler-400",
        "ts-413",
        "ts-503",
        "ts-507",
        "ts-500",
        "no-boxes",
        "off-contract-boxes",
    ],
)
def test_model_server_failure_maps_to_contract_error(
    client: TestClient,
    fake_ts: FakeTorchServe,
    png_bytes: bytes,
    responder,  # noqa: ANN001
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    fake_ts.predict = responder
    response = client.post("/predict", files={"file": ("a.png", png_bytes)}, params=params)

    assert_error(response, status, code)
    assert ("Retry-After" in response.headers) == (status == 503)


def test_model_server_errors_are_counted(
    client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    fake_ts.predict = _raise(httpx.ConnectError("refused"))
    client.post("/predict", files={"file": ("a.png", png_bytes)})
    client.post("/predict", files={"file": ("a.png", png_bytes)})

    text = client.get("/metrics").text
    assert 'gateway_model_server_errors_total{code="model_server_unavailable"} 2.0' in text
