"""Every runtime on the real TorchServe, through the real gateway: boxes equal in-process predict.

The session stack serves version 1 with the default runtime (ONNX Runtime). Here the same weights
are packaged again for OpenVINO and TorchScript, each registered beside it and asked with
``?version=``; on grey, RGBA, PNG, JPEG and EXIF-rotated JPEG photos the gateway's boxes must
equal ``YOLO(best.pt).predict(path)`` in this process (same classes, 0.5 px, 1e-3). OpenVINO INT8,
calibrated on generated training scenes and gated on mAP, is registered too: it must serve, with
its gate's figures in ``GET /models``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stack
from tests.integration.loop_support import loaded_versions, wait_no_active_job
from tests.support import assert_same_boxes
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.export import FLOAT_RUNTIMES
from yoloserve.modelserver.packaging import MODEL_NAME, AccuracySet, package
from yoloserve.training.dataset import write_split

pytestmark = pytest.mark.integration

IMGSZ = 320  # serving/model-config.yaml
PARITY_CONF = 0.01  # low, so every photo has boxes to compare


async def _registered(stack: Stack, mar: str, version: str, register: bool) -> None:
    async with httpx.AsyncClient(timeout=300) as http:
        client = TorchServeClient(
            http, stack.torchserve.inference_url, stack.torchserve.management_url
        )
        if register:
            await client.register(mar, initial_workers=1, synchronous=True)
        else:
            await client.unregister(MODEL_NAME, version)


INT8 = "openvino-int8"
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture(scope="module")
def int8_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Calibration scenes and a small labelled set for the INT8 gate."""
    root = tmp_path_factory.mktemp("shapes")
    write_split(root, "train", 60, seed=0)
    write_split(root, "test", 30, seed=2)
    test = tuple(sorted((root / "images" / "test").glob("*.jpg")))
    return {"calibration": sorted((root / "images" / "train").glob("*.jpg")),
            "accuracy_set": AccuracySet(test, {"name": "shapes-test[:30]", "images": len(test)})}


@pytest.fixture(scope="module")
def versions(stack: Stack, int8_inputs: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Runtime -> version, every runtime registered on the stack's TorchServe (not default)."""
    wait_no_active_job(stack.registry)
    default = stack.registry.load().default_version
    assert default is not None and stack.registry.get(default).runtime == "onnx"
    by_runtime = {"onnx": default}
    added: list[str] = []
    try:
        for runtime in (*FLOAT_RUNTIMES, INT8):
            if runtime in by_runtime:
                continue
            inputs = int8_inputs if runtime == INT8 else {}
            record = package(stack.weights, stack.registry, store_dir=stack.store_dir,
                             runtime=runtime, **inputs)
            assert record.runtime == runtime
            if record.version not in loaded_versions(stack):
                asyncio.run(_registered(stack, record.mar, record.version, register=True))
                added.append(record.version)
            by_runtime[runtime] = record.version
        yield by_runtime
    finally:
        for version in added:
            asyncio.run(_registered(stack, "", version, register=False))


def test_models_lists_each_runtime_with_its_parity(
    gateway: httpx.Client, versions: dict[str, str]
) -> None:
    listed = {v["version"]: v for v in gateway.get("/models").json()["versions"]}
    for runtime, version in versions.items():
        assert listed[version]["runtime"] == runtime
        gate = "accuracy" if runtime == INT8 else "parity"
        assert listed[version][gate]["passed"] is True, listed[version]


def test_the_int8_version_serves_through_the_gateway(
    gateway: httpx.Client, versions: dict[str, str]
) -> None:
    scene = SAMPLES / "shapes_1.jpg"
    response = gateway.post("/predict", params={"version": versions[INT8]},
                            content=scene.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == versions[INT8]
    assert response.json()["boxes"], "the shipped model finds shapes in its own kind of scene"


@pytest.mark.parametrize("runtime", FLOAT_RUNTIMES)
def test_gateway_equals_in_process_predict_on_real_photos(
    gateway: httpx.Client, versions: dict[str, str], photos: dict[str, Path], reference: Any,
    runtime: str,
) -> None:
    compared = 0
    for kind in ("grey", "rgba", "png", "jpeg", "exif_jpeg", "scene"):
        path = photos[kind]
        response = gateway.post(
            "/predict", params={"conf": PARITY_CONF, "version": versions[runtime]},
            files={"file": (path.name, path.read_bytes())},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["version"] == versions[runtime]
        result = reference.predict(str(path), imgsz=IMGSZ, conf=PARITY_CONF, verbose=False)[0]
        assert body["image"] == {"width": result.orig_shape[1], "height": result.orig_shape[0]}
        assert_same_boxes(body["boxes"], result)
        compared += len(result.boxes)
    assert compared > 0
