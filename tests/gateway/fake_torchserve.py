"""A scripted TorchServe for ``httpx.MockTransport``, a fake embedder, and assertion helpers."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from PIL import Image

Responder = Callable[[httpx.Request], httpx.Response]

HANDLER_ANSWER: dict[str, Any] = {
    "model": {"name": "yolo", "version": "3"},
    "image": {"width": 64, "height": 48},
    # Deliberately not sorted by confidence: the gateway must sort.
    "boxes": [
        {"xyxy": [2.0, 3.0, 30.0, 40.0], "conf": 0.51, "cls": 1, "name": "square"},
        {"xyxy": [10.0, 5.0, 50.0, 45.0], "conf": 0.97, "cls": 2, "name": "triangle"},
        {"xyxy": [0.0, 0.0, 8.0, 8.0], "conf": 0.74, "cls": 0, "name": "circle"},
    ],
    "timing_ms": {"preprocess": 1.0, "inference": 20.0, "postprocess": 1.5},
}

DESCRIBE_READY: list[dict[str, Any]] = [
    {
        "modelName": "yolo",
        "modelVersion": "3",
        "workers": [{"id": "9000", "status": "READY"}],
    }
]


class FakeTorchServe:
    """Scripted TorchServe: one responder per API, every request recorded.

    Attributes:
        requests: Everything the gateway sent, in order.
        predict: Answers ``/predictions/...``.
        ping: Answers ``/ping``.
        management: Answers the management API (``/models...``).
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.predict: Responder = lambda request: httpx.Response(200, json=HANDLER_ANSWER)
        self.ping: Responder = lambda request: httpx.Response(200, json={"status": "Healthy"})
        self.management: Responder = lambda request: httpx.Response(200, json=DESCRIBE_READY)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.port == 8086:
            return self.management(request)
        if request.url.path == "/ping":
            return self.ping(request)
        if request.url.path.startswith("/predictions/"):
            return self.predict(request)
        return httpx.Response(404, json={"code": 404, "message": "no such route"})

    @property
    def predict_requests(self) -> list[httpx.Request]:
        """Only the inference calls."""
        return [r for r in self.requests if r.url.path.startswith("/predictions/")]


class FakeEmbedder:
    """Deterministic 4-d embedding: the box corners scaled, so tests can check the pairing."""

    dim = 4
    version = "fake-1"

    def embed(self, image: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / 100.0


def encode_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A small image in ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 180, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check the contract's error shape and return the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error
