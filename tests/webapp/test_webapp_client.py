"""``webapp.client``: requests it sends and how every failure becomes a GatewayError."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
import pytest

from tests.webapp.fake_gateway import (
    FEEDBACK_BODY,
    MODELS_BODY,
    PREDICT_BODY,
    FakeGateway,
    error_response,
    parse_multipart,
)
from webapp import client
from webapp.client import (
    GatewayClient,
    GatewayError,
    GatewayUnreachable,
    LabelBox,
    make_client,
)
from webapp.config import Settings

BASE = "http://gateway.test:8080"


def _client(
    handler: Callable[[httpx.Request], httpx.Response], api_key: str | None = "k"
) -> GatewayClient:
    return GatewayClient(BASE, api_key=api_key, transport=httpx.MockTransport(handler))


def _answer(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: response


def _raise(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


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
    with pytest.raises(GatewayError) as info, _client(_answer(response)) as gw:
        gw.models()
    err = info.value
    assert not isinstance(err, GatewayUnreachable)
    assert (err.status, err.code, err.retry_after) == (status, code, retry_after)
    assert in_message in err.message
    assert f"HTTP {status}" in str(err)


def test_contract_error_keeps_request_id() -> None:
    with pytest.raises(GatewayError) as info, _client(_answer(error_response(413, "x", "y"))) as gw:
        gw.models()
    assert info.value.request_id == "req-err"


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
    with pytest.raises(GatewayUnreachable) as info, _client(_raise(exc)) as gw:
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
    with pytest.raises(GatewayError) as info, _client(_answer(response)) as gw:
        gw.predict(b"img", "a.png", "image/png")
    assert (info.value.status, info.value.code) == (200, "invalid_response")
    assert "/predict" in info.value.message


def test_predict_sends_image_and_options_and_parses() -> None:
    fake = FakeGateway()
    with _client(fake.handle) as gw:
        pred = gw.predict(b"\x89PNG...", "a.png", "image/png", conf=0.3, iou=0.5, max_det=10)
    request = fake.last("POST", "/predict")
    assert dict(request.url.params) == {"conf": "0.3", "iou": "0.5", "max_det": "10"}
    assert parse_multipart(request)["file"] == ("a.png", "image/png", b"\x89PNG...")
    assert "X-API-Key" not in request.headers  # a read route
    assert pred.request_id == "req-0001"
    assert (pred.model_version, pred.width, pred.height) == ("2", 64, 48)
    assert [b.name for b in pred.boxes] == ["triangle", "circle"]
    assert pred.boxes[0].xyxy == (10.0, 8.0, 30.0, 28.0)
    assert pred.timing_ms == {"total": 41.2, "model": 35.0}
    assert pred.round_trip_ms >= 0


def test_predict_falls_back_to_version_header() -> None:
    body = {k: v for k, v in PREDICT_BODY.items() if k != "model"}
    response = httpx.Response(200, json=body, headers={"X-Model-Version": "7"})
    with _client(_answer(response)) as gw:
        assert gw.predict(b"x", "a.png", "image/png").model_version == "7"


def test_feedback_payload_and_answer() -> None:
    fake = FakeGateway()
    boxes = [LabelBox((1.0, 2.0, 3.333333, 4.0), "square")]
    with _client(fake.handle, api_key="secret") as gw:
        result = gw.feedback(b"jpeg", "a.jpg", "image/jpeg", boxes, request_id="req-9")
    request = fake.last("POST", "/feedback")
    assert request.headers["X-API-Key"] == "secret"
    parts = parse_multipart(request)
    assert parts["file"] == ("a.jpg", "image/jpeg", b"jpeg")
    assert json.loads(parts["labels"][2]) == {
        "request_id": "req-9",
        "boxes": [{"xyxy": [1.0, 2.0, 3.33, 4.0], "name": "square"}],
    }
    assert result.rows_written == FEEDBACK_BODY["rows_written"]
    assert result.prod_rows_total == 148
    assert (result.retrain_triggered, result.job_id, result.next_at_rows) == (True, "r-0007", 200)


def test_feedback_with_no_boxes_and_no_key() -> None:
    fake = FakeGateway()
    with _client(fake.handle, api_key=None) as gw:
        gw.feedback(b"png", "a.png", "image/png", [])
    request = fake.last("POST", "/feedback")
    assert "X-API-Key" not in request.headers
    assert json.loads(parse_multipart(request)["labels"][2]) == {"boxes": []}


def test_models_activate_retrain_and_job() -> None:
    fake = FakeGateway()
    with _client(fake.handle) as gw:
        info = gw.models()
        assert info.default_version == "2"
        assert info.classes == MODELS_BODY["classes"]
        assert info.versions[0].parent is None and info.versions[1].parent == "1"
        assert info.versions[1].metrics == {"map50": 0.94, "map50_95": 0.77}
        assert gw.activate("1") == {"default_version": "1"}
        assert gw.retrain().job_id == "r-0008"
        job = gw.retrain_status("r-0007")
    assert fake.last("POST", "/models/1/activate").headers["X-API-Key"] == "k"
    assert fake.last("POST", "/retrain").headers["X-API-Key"] == "k"
    assert (job.state, job.candidate_version) == ("succeeded", "3")
    assert job.metrics["candidate"] == {"map50": 0.95}


def test_path_segments_are_quoted() -> None:
    fake = FakeGateway()
    with _client(fake.handle) as gw, pytest.raises(GatewayError) as info:
        gw.retrain_status("../models")
    assert fake.requests[-1].url.raw_path == b"/retrain/..%2Fmodels"
    assert info.value.code == "not_found"


def test_make_client_uses_settings_and_transport_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGateway()
    monkeypatch.setattr(client, "TRANSPORT", httpx.MockTransport(fake.handle))
    settings = Settings(gateway_url="http://gw.example:9000", api_key="abc", timeout_s=5.0)
    with make_client(settings, timeout_s=1.0) as gw:
        gw.retrain()
    request = fake.last("POST", "/retrain")
    assert str(request.url) == "http://gw.example:9000/retrain"
    assert request.headers["X-API-Key"] == "abc"
    assert request.extensions["timeout"]["read"] == 1.0
    assert request.extensions["timeout"]["connect"] == settings.connect_timeout_s
