"""Upload limits and image sniffing: refused early, before TorchServe, in the contract's shape."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.gateway.fake_torchserve import FakeTorchServe, assert_error, encode_image

LIMIT = 1000
CHUNK = 256


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


class EndlessUpload:
    """An ASGI ``receive`` that streams a multipart file part that never ends, counting reads."""

    def __init__(self) -> None:
        self.chunks_read = 0

    async def __call__(self) -> dict[str, Any]:
        self.chunks_read += 1
        head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        body = head if self.chunks_read == 1 else b"x" * CHUNK
        return {"type": "http.request", "body": body, "more_body": True}


async def _call(app: FastAPI, scope: dict[str, Any], receive: EndlessUpload) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return {"status": start["status"], "headers": headers, "json": json.loads(body)}


async def test_declared_oversize_body_is_refused_without_reading_it(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe
) -> None:
    app = build_app(max_upload_bytes=LIMIT, multipart_overhead_bytes=0)
    receive = EndlessUpload()

    answer = await _call(app, _scope([(b"content-length", b"50000000")]), receive)

    assert answer["status"] == 413
    assert answer["json"]["error"]["code"] == "payload_too_large"
    assert answer["json"]["error"]["request_id"] == answer["headers"]["x-request-id"]
    assert receive.chunks_read == 0
    assert fake_ts.requests == []


async def test_streamed_oversize_body_stops_being_read_at_the_limit(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe
) -> None:
    app = build_app(max_upload_bytes=LIMIT, multipart_overhead_bytes=0)
    receive = EndlessUpload()  # chunked: no Content-Length to trust

    answer = await _call(app, _scope([]), receive)

    assert answer["status"] == 413
    assert answer["json"]["error"]["code"] == "payload_too_large"
    assert answer["headers"]["connection"] == "close"
    assert receive.chunks_read <= LIMIT // CHUNK + 2
    assert fake_ts.requests == []


def test_oversize_request_through_http_is_413_json(build_app: Callable[..., FastAPI]) -> None:
    with TestClient(build_app(max_upload_bytes=LIMIT, multipart_overhead_bytes=0)) as client:
        response = client.post("/predict", files={"file": ("a.png", b"\0" * (LIMIT * 2))})
    assert_error(response, 413, "payload_too_large")


def test_file_over_the_image_limit_is_413(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe
) -> None:
    # Within the body allowance (limit + envelope), but the file itself is over the limit.
    with TestClient(build_app(max_upload_bytes=LIMIT)) as client:
        response = client.post("/predict", files={"file": ("a.bin", os.urandom(LIMIT + 1))})
    assert_error(response, 413, "image_too_large")
    assert fake_ts.requests == []


def test_too_many_pixels_is_413(build_app: Callable[..., FastAPI], png_bytes: bytes) -> None:
    with TestClient(build_app(max_image_pixels=64 * 48 - 1)) as client:
        response = client.post("/predict", files={"file": ("a.png", png_bytes)})
    assert "pixels" in assert_error(response, 413, "image_too_large")["message"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "invalid_image"),
        (b"%PDF-1.7 definitely not an image", "invalid_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "invalid_image"),  # a PNG signature, then garbage
        (encode_image("GIF"), "unsupported_image_format"),
        (encode_image("TIFF"), "unsupported_image_format"),
    ],
    ids=["empty", "pdf", "broken-png", "gif", "tiff"],
)
def test_non_image_is_415_before_torchserve(
    client: TestClient, fake_ts: FakeTorchServe, data: bytes, code: str
) -> None:
    response = client.post("/predict", files={"file": ("upload", data, "image/png")})
    assert_error(response, 415, code)
    assert fake_ts.requests == []


def test_non_image_is_415_on_predict_image_too(client: TestClient) -> None:
    response = client.post("/predict/image", files={"file": ("a.txt", b"hello", "text/plain")})
    assert_error(response, 415, "invalid_image")
