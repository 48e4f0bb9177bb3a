"""Hot-swap tolerance: an unpinned prediction that meets an unavailable model server is retried
once, after a short pause; pinned versions and input errors never are."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.gateway.fake_torchserve import HANDLER_ANSWER, FakeTorchServe, assert_error
from tests.gateway.test_gateway_feedback import GT_BOX, feedback_form, read_rows, seed_registry

Responder = Callable[[httpx.Request], httpx.Response]
RETRY_DELAY_S = 0.15


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=HANDLER_ANSWER)


def _status(status: int, body: object) -> Responder:
    return lambda request: httpx.Response(status, json=body)


def _raise(exc: Exception) -> Responder:
    def responder(request: httpx.Request) -> httpx.Response:
        raise exc

    return responder


MODEL_NOT_FOUND = _status(404, {"code": 404, "message": "Model not found: yolo"})
NO_WORKER = _status(503, {"code": 503, "message": "No worker is available to serve request"})
CONNECT_ERROR = _raise(httpx.ConnectError("refused"))


class Script:
    """Answers predictions from a list, one responder per call (the last one repeats)."""

    def __init__(self, *responders: Responder) -> None:
        self.responders = list(responders)
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        responder = self.responders[min(len(self.times), len(self.responders)) - 1]
        return responder(request)


@pytest.fixture
def retry_client(build_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(build_app(predict_retry_delay_s=RETRY_DELAY_S)) as client:
        yield client


def _predict(client: TestClient, png: bytes, **params: str) -> httpx.Response:
    return client.post("/predict", files={"file": ("a.png", png)}, params=params)


@pytest.mark.parametrize(
    "first",
    [MODEL_NOT_FOUND, NO_WORKER, CONNECT_ERROR, _raise(httpx.RemoteProtocolError("closed")),
     # The swap unloaded the old version's worker while it held this request.
     _status(500, {"code": 500, "type": "InternalServerException", "message": "Worker died."})],
    ids=["404-model-not-found", "503-no-worker", "connect-error", "dropped-connection",
         "500-worker-died"],
)
def test_unpinned_prediction_is_retried_once_during_a_swap(
    retry_client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes, first: Responder
) -> None:
    script = Script(first, _ok)
    fake_ts.predict = script

    response = _predict(retry_client, png_bytes)

    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "3"
    assert len(script.times) == 2
    assert script.times[1] - script.times[0] >= RETRY_DELAY_S
    text = retry_client.get("/metrics").text
    assert "gateway_model_server_retries_total" in text
    assert "gateway_model_server_errors_total{" not in text  # the client saw no error


def test_only_one_retry(
    retry_client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    script = Script(NO_WORKER)
    fake_ts.predict = script

    response = _predict(retry_client, png_bytes)

    assert_error(response, 503, "model_server_unavailable")
    assert len(script.times) == 2
    assert 'gateway_model_server_retries_total{code="model_server_unavailable"} 1.0' in (
        retry_client.get("/metrics").text
    )


@pytest.mark.parametrize(
    ("first", "status", "code"),
    [
        (MODEL_NOT_FOUND, 404, "unknown_version"),
        (NO_WORKER, 503, "model_server_unavailable"),
        (CONNECT_ERROR, 503, "model_server_unavailable"),
    ],
    ids=["404", "503", "connect-error"],
)
def test_pinned_version_is_never_retried(
    retry_client: TestClient,
    fake_ts: FakeTorchServe,
    png_bytes: bytes,
    first: Responder,
    status: int,
    code: str,
) -> None:
    script = Script(first, _ok)
    fake_ts.predict = script

    assert_error(_predict(retry_client, png_bytes, version="2"), status, code)
    assert len(script.times) == 1


@pytest.mark.parametrize(
    ("first", "status", "code"),
    [
        (_status(415, {"error": {"code": "invalid_image", "message": "no"}}), 415, "invalid_image"),
        (
            _status(400, {"error": {"code": "invalid_parameter", "message": "iou"}}),
            400,
            "invalid_parameter",
        ),
        (_status(413, {"code": 413, "message": "too big"}), 413, "image_too_large"),
        (_status(500, {"code": 500, "message": "handler failed"}), 502, "model_server_error"),
        (_raise(httpx.ReadTimeout("slow")), 504, "model_server_timeout"),
        (_raise(httpx.PoolTimeout("pool full")), 503, "model_server_unavailable"),
    ],
    ids=["415", "400", "413", "500", "read-timeout", "pool-timeout"],
)
def test_other_failures_are_not_retried(
    retry_client: TestClient,
    fake_ts: FakeTorchServe,
    png_bytes: bytes,
    first: Responder,
    status: int,
    code: str,
) -> None:
    script = Script(first, _ok)
    fake_ts.predict = script

    assert_error(_predict(retry_client, png_bytes), status, code)
    assert len(script.times) == 1


def test_feedback_prediction_is_retried_too(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe, settings: Settings
) -> None:
    seed_registry(settings.store.url)
    script = Script(MODEL_NOT_FOUND, _ok)
    fake_ts.predict = script

    with TestClient(build_app(predict_retry_delay_s=RETRY_DELAY_S)) as client:
        response = client.post("/feedback", **feedback_form([{"xyxy": GT_BOX, "name": "square"}]))

    assert response.status_code == 201, response.text
    assert len(script.times) == 2
    assert len(read_rows(settings.data_dir)) == 3
