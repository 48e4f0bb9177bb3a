"""``POST /predict`` and ``POST /predict/image`` against a scripted TorchServe."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.gateway.fake_torchserve import (
    HANDLER_ANSWER,
    FakeTorchServe,
    assert_error,
    encode_image,
)


def _upload(data: bytes, name: str = "a.png", mime: str = "image/png") -> dict[str, tuple]:
    return {"file": (name, data, mime)}


def test_predict_answers_the_contract(client: TestClient, png_bytes: bytes) -> None:
    response = client.post("/predict", files=_upload(png_bytes))

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "model", "image", "boxes", "timing_ms"}
    assert body["model"] == {"name": "yolo", "version": "3"}
    assert body["image"] == {"width": 64, "height": 48}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-Model-Version"] == "3"
    assert set(body["timing_ms"]) == {"total", "model"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["model"] >= 0
    first = body["boxes"][0]
    assert set(first) == {"xyxy", "conf", "cls", "name"}  # no embedding unless asked for
    assert first == {"xyxy": [10.0, 5.0, 50.0, 45.0], "conf": 0.97, "cls": 2, "name": "triangle"}


def test_boxes_are_sorted_by_confidence(client: TestClient, png_bytes: bytes) -> None:
    boxes = client.post("/predict", files=_upload(png_bytes)).json()["boxes"]
    confs = [box["conf"] for box in boxes]
    assert confs == sorted(confs, reverse=True) == [0.97, 0.74, 0.51]


def test_request_id_is_echoed(client: TestClient, png_bytes: bytes) -> None:
    response = client.post(
        "/predict", files=_upload(png_bytes), headers={"X-Request-ID": "client-id-42"}
    )
    assert response.headers["X-Request-ID"] == "client-id-42"
    assert response.json()["request_id"] == "client-id-42"


def test_unsafe_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(response.headers["X-Request-ID"]) == 32


def test_the_image_is_the_body_and_parameters_are_headers(
    client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    params = {"conf": 0.3, "iou": 0.5, "max_det": 7, "version": "2"}
    client.post("/predict", files=_upload(png_bytes), params=params)

    (sent,) = fake_ts.predict_requests
    assert sent.method == "POST"
    assert sent.url.path == "/predictions/yolo/2"
    assert sent.headers["content-type"] == "application/octet-stream"
    assert sent.content == png_bytes, "the upload is passed on as it came, not re-encoded"
    assert (sent.headers["x-yolo-conf"], sent.headers["x-yolo-iou"],
            sent.headers["x-yolo-max-det"]) == ("0.3", "0.5", "7")


def test_unpinned_request_goes_to_the_default_version(
    client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    client.post("/predict", files=_upload(png_bytes))
    (sent,) = fake_ts.predict_requests
    assert sent.url.path == "/predictions/yolo"
    assert "x-yolo-conf" not in sent.headers  # the handler's defaults apply


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_supported_formats_are_accepted(client: TestClient, fmt: str) -> None:
    response = client.post("/predict", files=_upload(encode_image(fmt), "x", "image/any"))
    assert response.status_code == 200, response.text


def test_embeddings_are_added_per_box(client: TestClient, png_bytes: bytes) -> None:
    response = client.post("/predict", files=_upload(png_bytes), params={"embeddings": "true"})

    assert response.status_code == 200, response.text
    body = response.json()
    for box in body["boxes"]:
        # The fake embedder returns the box corners / 100: each vector belongs to its own box.
        assert box["embedding"] == pytest.approx([v / 100 for v in box["xyxy"]])
    assert body["timing_ms"]["embeddings"] >= 0


def test_embeddings_unavailable_is_503_not_500(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    with TestClient(build_app(embedder=False)) as client:  # real loader, artifact missing
        response = client.post("/predict", files=_upload(png_bytes), params={"embeddings": 1})

    error = assert_error(response, 503, "embeddings_unavailable")
    assert "not found" in error["message"] or "not installed" in error["message"]
    assert response.headers["Retry-After"]
    assert fake_ts.predict_requests == []  # failed before spending model time


def test_without_embeddings_the_embedder_is_not_needed(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    with TestClient(build_app(embedder=False)) as client:
        assert client.post("/predict", files=_upload(png_bytes)).status_code == 200


def test_no_boxes_is_a_valid_answer(
    client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes
) -> None:
    fake_ts.predict = lambda request: httpx.Response(200, json={**HANDLER_ANSWER, "boxes": []})
    response = client.post("/predict", files=_upload(png_bytes), params={"embeddings": True})
    assert response.status_code == 200
    assert response.json()["boxes"] == []


@pytest.mark.parametrize(
    ("fmt", "mime", "pil_format"),
    [(None, "image/png", "PNG"), ("png", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG")],
)
def test_predict_image_returns_an_annotated_image(
    client: TestClient, png_bytes: bytes, fmt: str | None, mime: str, pil_format: str
) -> None:
    params = {"format": fmt} if fmt else {}
    response = client.post("/predict/image", files=_upload(png_bytes), params=params)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == mime
    assert response.headers["X-Model-Version"] == "3"
    assert response.headers["X-Request-ID"]
    with Image.open(io.BytesIO(response.content)) as drawn:
        assert drawn.format == pil_format
        assert drawn.size == (64, 48)
        drawn_pixels = drawn.convert("RGB")
    with Image.open(io.BytesIO(png_bytes)) as original:
        # Something was drawn: the image is no longer one flat colour.
        assert drawn_pixels.getcolors(maxcolors=10_000) != original.convert("RGB").getcolors()


def test_predict_image_rejects_an_unknown_format(client: TestClient, png_bytes: bytes) -> None:
    response = client.post("/predict/image", files=_upload(png_bytes), params={"format": "gif"})
    assert_error(response, 400, "invalid_parameter")


def test_openapi_documents_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    names = {p["name"] for p in predict["parameters"]}
    assert names == {"conf", "iou", "max_det", "version", "embeddings"}
    for status in ("400", "413", "415", "422", "503", "504"):
        assert predict["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    assert "X-Model-Version" in predict["responses"]["200"]["headers"]
    image = spec["paths"]["/predict/image"]["post"]
    assert set(image["responses"]["200"]["content"]) == {"image/png", "image/jpeg"}


@pytest.mark.parametrize("mime", ["image/png", "application/octet-stream"])
def test_the_image_may_be_the_raw_body(
    client: TestClient, fake_ts: FakeTorchServe, png_bytes: bytes, mime: str
) -> None:
    response = client.post("/predict", content=png_bytes, headers={"Content-Type": mime},
                           params={"conf": 0.3})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 64, "height": 48}
    (sent,) = fake_ts.predict_requests
    assert sent.content == png_bytes and sent.headers["x-yolo-conf"] == "0.3"
    drawn = client.post("/predict/image", content=png_bytes, headers={"Content-Type": mime})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"


def test_a_raw_body_is_checked_like_an_upload(client: TestClient, fake_ts: FakeTorchServe) -> None:
    empty = client.post("/predict", content=b"", headers={"Content-Type": "image/jpeg"})
    assert_error(empty, 415, "invalid_image")
    png = {"Content-Type": "image/png"}
    garbage = client.post("/predict", content=b"not an image", headers=png)
    assert_error(garbage, 415, "invalid_image")
    neither = client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    assert neither.status_code == 422
    assert fake_ts.predict_requests == []


def test_a_raw_body_over_the_limit_is_413(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe
) -> None:
    with TestClient(build_app(max_upload_bytes=1000)) as small:
        response = small.post("/predict", content=encode_image(size=(400, 300)) + b"x" * 2000,
                              headers={"Content-Type": "image/png"})
    assert_error(response, 413, "image_too_large")
    assert fake_ts.predict_requests == []
