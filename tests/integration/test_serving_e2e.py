"""Real TorchServe + real gateway: boxes come back, errors are contract JSON, and the gateway's
boxes equal in-process ``YOLO(weights).predict`` on the same file (the proof that serving does
not change the model)."""

from __future__ import annotations

import concurrent.futures as cf
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.conftest import Stack
from tests.support import assert_same_boxes
from yoloserve import paths

pytestmark = pytest.mark.integration

IMGSZ = 320  # serving/model-config.yaml
PARITY_CONF = 0.01  # low, so that every image has boxes to compare even for a weak model


def _post(client: httpx.Client, path: Path, **params: Any) -> httpx.Response:
    return client.post("/predict", params=params, files={"file": (path.name, path.read_bytes())})


def test_predict_returns_boxes_in_original_coordinates(
    gateway: httpx.Client, stack: Stack
) -> None:
    found = 0
    for path in sorted(paths.SAMPLES_DIR.glob("shapes_*")):
        response = _post(gateway, path)
        assert response.status_code == 200, response.text
        body = response.json()
        width, height = Image.open(path).size
        assert body["image"] == {"width": width, "height": height}
        assert body["model"] == {"name": "yolo", "version": stack.first_version.version}
        assert response.headers["X-Model-Version"] == stack.first_version.version
        assert response.headers["X-Request-ID"] == body["request_id"]
        confs = [b["conf"] for b in body["boxes"]]
        assert confs == sorted(confs, reverse=True)
        for box in body["boxes"]:
            x1, y1, x2, y2 = box["xyxy"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert box["name"] in ("circle", "square", "triangle")
        found += len(body["boxes"])
    assert found > 0, "the shipped model finds shapes in the shipped samples"


def test_parity_gateway_vs_in_process_ultralytics(
    gateway: httpx.Client, default_weights: Path, sample_jpegs: Callable[[int, int], list[Path]]
) -> None:
    from ultralytics import YOLO

    yolo = YOLO(str(default_weights))
    images = [*sample_jpegs(4, 11), paths.SAMPLES_DIR / "shapes_640.png"]
    compared = 0
    for path in images:
        response = _post(gateway, path, conf=PARITY_CONF)
        assert response.status_code == 200, response.text
        result = yolo.predict(str(path), imgsz=IMGSZ, conf=PARITY_CONF, iou=0.7, verbose=False)[0]
        assert_same_boxes(response.json()["boxes"], result)
        compared += len(result.boxes)
    assert compared > 0


def test_per_request_thresholds_reach_the_handler(gateway: httpx.Client) -> None:
    path = paths.SAMPLES_DIR / "shapes_1.jpg"
    loose = _post(gateway, path, conf=0.01).json()["boxes"]
    capped = _post(gateway, path, conf=0.01, max_det=1).json()["boxes"]
    strict = _post(gateway, path, conf=0.99).json()["boxes"]
    assert len(capped) == min(1, len(loose))
    assert len(strict) <= len(loose)
    assert all(b["conf"] >= 0.99 for b in strict)


def test_predict_image_draws_png(gateway: httpx.Client) -> None:
    path = paths.SAMPLES_DIR / "shapes_2.jpg"
    response = gateway.post("/predict/image", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == Image.open(path).size


@pytest.mark.parametrize(
    ("files", "params", "status", "code"),
    [
        ({"file": ("x.jpg", b"not an image at all")}, {}, 415, None),
        ({"file": ("x.jpg", None)}, {"conf": 7}, 422, None),
        ({}, {}, 422, None),
    ],
    ids=["not-an-image", "bad-conf", "no-file"],
)
def test_bad_input_gets_contract_json(
    gateway: httpx.Client, files: dict[str, Any], params: dict[str, Any], status: int, code: Any
) -> None:
    sample = (paths.SAMPLES_DIR / "shapes_1.jpg").read_bytes()
    files = {k: (n, sample if data is None else data) for k, (n, data) in files.items()}
    response = gateway.post("/predict", files=files or None, params=params, data={"x": "1"})
    assert response.status_code in (status, 400), response.text
    error = response.json()["error"]
    assert error["code"] and error["message"] and error["request_id"]


def test_upload_over_the_limit_gets_413(gateway: httpx.Client) -> None:
    big = b"\xff" * (11 * 1024 * 1024)
    response = gateway.post("/predict", files={"file": ("big.jpg", big)})
    assert response.status_code == 413
    assert response.json()["error"]["code"]


def test_concurrent_clients_all_succeed(gateway: httpx.Client, stack: Stack) -> None:
    # 8 clients at once go through TorchServe's dynamic batching (batchSize 4): every answer is
    # its own image's, not a neighbour's from the same batch.
    images = sorted(paths.SAMPLES_DIR.glob("shapes_*"))
    expected = {p.name: Image.open(p).size for p in images}

    def one(path: Path) -> tuple[str, dict[str, Any]]:
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
            return path.name, _post(client, path).json()

    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, images * 4))
    for name, body in results:
        assert (body["image"]["width"], body["image"]["height"]) == expected[name]


def test_health_ready_models(gateway: httpx.Client, stack: Stack) -> None:
    assert gateway.get("/health").status_code == 200
    assert gateway.get("/ready").status_code == 200
    models = gateway.get("/models").json()
    assert models["default_version"] == stack.first_version.version
    assert models["classes"] == ["circle", "square", "triangle"]
    metrics = gateway.get("/metrics").text
    assert "gateway_requests_total" in metrics or "http_requests_total" in metrics
