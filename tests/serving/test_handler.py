"""The TorchServe handler, run without the server: TorchServe's own ``Context`` and
``RequestProcessor`` carry the batch, as the worker would hand it over.

What it must do: one bad request fails alone (415/400/413), per-request thresholds apply, and the
boxes equal ``YOLO(weights).predict(path)`` (same classes, coordinates within 0.5 px, confidence
within 1e-3). The parity tests predict with a very low ``conf`` so that even an early checkpoint
yields boxes to compare.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support import assert_same_boxes
from yoloserve.modelserver import local_handler

PARITY_CONF = 0.001  # low enough that an untrained model still returns boxes
IMGSZ = 320


@pytest.fixture(scope="module")
def handler_module() -> ModuleType:
    return local_handler.handler_module()


@pytest.fixture(scope="module")
def staged_onnx(default_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shipped weights laid out as an unpacked ONNX .mar (what every version serves)."""
    from yoloserve.modelserver.packaging import stage

    return stage(default_weights, "onnx", tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def context_factory(default_weights: Path, staged_onnx: Any) -> Callable[[], Any]:
    """Build TorchServe contexts over a model dir laid out like an unpacked .mar."""
    from ts.context import Context
    from ts.metrics.metrics_store import MetricsStore
    from ts.utils.util import get_yaml_config

    model_dir = staged_onnx.model_dir
    yaml_config = get_yaml_config(str(staged_onnx.config_file))
    manifest = {
        "model": {"modelName": "yolo", "modelVersion": "7", "serializedFile": default_weights.name}
    }

    def make() -> Any:
        return Context(
            "yolo", str(model_dir), manifest, 4, None, "0.12.0",
            metrics=MetricsStore(uuid.uuid4(), "yolo"), model_yaml_config=yaml_config,
        )

    return make


@pytest.fixture(scope="module")
def handler(handler_module: ModuleType, context_factory: Callable[[], Any]) -> Any:
    instance = handler_module.YoloHandler()
    instance.initialize(context_factory())
    return instance


@pytest.fixture(scope="module")
def yolo(default_weights: Path, handler: Any) -> Any:
    """Ultralytics' own predictor on the same weights, running on as many threads as ours.

    Its first predict sets torch's thread count (to cores - 1). A different count sums floats in
    another order, and an untrained checkpoint scores hundreds of boxes almost equally: NMS then
    breaks near-ties differently. Same threads, same sums: a bit-for-bit comparison.
    """
    import torch
    from ultralytics import YOLO

    model = YOLO(str(default_weights))
    model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=IMGSZ, verbose=False)
    torch.set_num_threads(handler.threads)
    return model


def run(handler: Any, context_factory: Callable[[], Any], requests: list[dict[str, Any]]) -> tuple[
    list[dict[str, Any]], list[Any]
]:
    """Send one batch; return the responses and each request's processor (status, headers)."""
    from ts.context import RequestProcessor

    context = context_factory()
    context.request_processor = [RequestProcessor({}) for _ in requests]
    out = handler.handle(requests, context)
    json.dumps(out)  # TorchServe serialises it: it must be plain JSON
    return out, context.request_processor


def assert_well_formed(response: dict[str, Any], width: int, height: int) -> None:
    assert response["model"] == {"name": "yolo", "version": "7"}
    assert response["image"] == {"width": width, "height": height}
    assert set(response["timing_ms"]) == {"preprocess", "inference", "postprocess"}
    confs = [b["conf"] for b in response["boxes"]]
    assert confs == sorted(confs, reverse=True)
    names = ("circle", "square", "triangle")
    for box in response["boxes"]:
        x1, y1, x2, y2 = box["xyxy"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        assert 0 <= box["conf"] <= 1
        assert box["name"] == names[box["cls"]]


def test_torchserve_finds_exactly_one_handler_class(handler_module: ModuleType) -> None:
    from ts.utils.util import list_classes_from_module

    assert list_classes_from_module(handler_module) == [handler_module.YoloHandler]


def test_initialize_reads_model_yaml(handler: Any) -> None:
    assert handler.imgsz == [IMGSZ, IMGSZ]
    assert (handler.defaults.conf, handler.defaults.iou, handler.defaults.max_det) == (
        0.25, 0.7, 300,
    )
    assert handler.names == {0: "circle", 1: "square", 2: "triangle"}
    assert handler.threads >= 1
    assert handler.model_version == "7"


def test_batch_with_a_corrupt_image_fails_only_that_request(
    handler: Any, context_factory: Callable[[], Any], sample_jpegs: Callable[[int, int], list[Path]]
) -> None:
    first, second = sample_jpegs(2, 1)
    out, processors = run(
        handler,
        context_factory,
        [
            {"data": first.read_bytes(), "conf": b"0.001"},
            {"data": b"\xff\xd8 this is not a JPEG"},
            {"data": second.read_bytes(), "conf": b"0.001"},
        ],
    )
    assert [p.get_response_status_code() for p in processors] == [200, 415, 200]
    assert out[1] == {"error": {"code": "invalid_image", "message": out[1]["error"]["message"]}}
    for response, path in ((out[0], first), (out[2], second)):
        assert response["boxes"], "conf=0.001 always leaves boxes"
        assert_well_formed(response, *Image.open(path).size)
    headers = processors[0].get_response_headers()
    assert headers["X-Model-Version"] == "7"
    assert headers["content-type"] == "application/json"


def test_per_request_thresholds(
    handler: Any, context_factory: Callable[[], Any], sample_jpegs: Callable[[int, int], list[Path]]
) -> None:
    data = sample_jpegs(1, 2)[0].read_bytes()
    out, processors = run(
        handler,
        context_factory,
        [
            {"data": data, "conf": b"0.001", "max_det": b"3"},
            {"data": data, "conf": "0.001"},
            {"data": data, "conf": "0.001", "iou": "0.2"},
            {"data": data},  # the YAML defaults: conf 0.25
            {"data": data, "conf": b"0.999"},
        ],
    )
    assert all(p.get_response_status_code() == 200 for p in processors)
    top3, full, strict_nms, default, high = (r["boxes"] for r in out)
    assert len(top3) == 3 and len(full) > 3
    assert [b["conf"] for b in top3] == [b["conf"] for b in full[:3]]
    assert len(strict_nms) < len(full)  # a lower IoU threshold suppresses more overlaps
    assert all(b["conf"] >= 0.25 for b in default)
    assert all(b["conf"] >= 0.999 for b in high)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"conf": b"0.5", "iou": b"0.45", "max_det": b"10"}, True),
        ({"conf": "0", "iou": "1", "max_det": "1000"}, True),
        ({"conf": 0.3, "max_det": 5.0}, True),  # JSON numbers
        ({"conf": b" 0.5\r\n"}, True),  # multipart text parts may carry whitespace
        ({"conf": b"abc"}, False),
        ({"conf": b"1.5"}, False),
        ({"conf": b"nan"}, False),
        ({"iou": b"-0.1"}, False),
        ({"max_det": b"0"}, False),
        ({"max_det": b"2.5"}, False),
        ({"max_det": b"1001"}, False),
        ({"conf": True}, False),
        ({"conf": b"\xff\xfe"}, False),
    ],
)
def test_parameter_validation(handler_module: ModuleType, fields: dict[str, Any], ok: bool) -> None:
    defaults = handler_module.YoloHandler.Params(0.25, 0.7, 300)
    if ok:
        params = handler_module.parse_params([fields], defaults)
        assert 0 <= params.conf <= 1 and 0 <= params.iou <= 1 and 1 <= params.max_det <= 1000
    else:
        with pytest.raises(handler_module.YoloHandler.RequestError) as err:
            handler_module.parse_params([fields], defaults)
        assert (err.value.status, err.value.code) == (400, "invalid_parameter")


def test_bad_parameter_gets_400_for_that_request_only(
    handler: Any, context_factory: Callable[[], Any], sample_jpegs: Callable[[int, int], list[Path]]
) -> None:
    data = sample_jpegs(1, 2)[0].read_bytes()
    out, processors = run(
        handler, context_factory, [{"data": data, "conf": b"2"}, {"data": data}, {"conf": b"0.1"}]
    )
    assert [p.get_response_status_code() for p in processors] == [400, 200, 400]
    assert out[0]["error"]["code"] == "invalid_parameter"
    assert "'2'" in out[0]["error"]["message"]
    assert out[2]["error"]["code"] == "missing_image"


@pytest.mark.parametrize("form", ["dict", "json-bytes", "data-url", "str-json"])
def test_json_body_with_base64_image(
    handler: Any,
    context_factory: Callable[[], Any],
    sample_jpegs: Callable[[int, int], list[Path]],
    form: str,
) -> None:
    data = sample_jpegs(1, 2)[0].read_bytes()
    b64 = base64.b64encode(data).decode()
    body: dict[str, Any] = {"image": b64, "conf": 0.001, "max_det": 4}
    request: dict[str, Any] = {
        "dict": {"body": body},
        "json-bytes": {"body": json.dumps(body).encode()},
        "data-url": {"body": {**body, "image": "data:image/jpeg;base64," + b64}},
        "str-json": {"data": json.dumps(body)},
    }[form]
    out, processors = run(handler, context_factory, [request, {"data": data, "conf": b"0.001"}])
    assert processors[0].get_response_status_code() == 200
    assert out[0]["boxes"] == out[1]["boxes"][:4]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image": "@@@ not base64 @@@"}, 415, "invalid_image"),
        ({"conf": 0.5}, 400, "missing_image"),
        (b"{not json", 400, "invalid_request"),
        (base64.b64encode(b"GIF89a but not really").decode(), 415, "invalid_image"),
        (b"", 400, "missing_image"),
    ],
)
def test_malformed_requests(
    handler: Any, context_factory: Callable[[], Any], body: Any, status: int, code: str
) -> None:
    out, processors = run(handler, context_factory, [{"body": body}])
    assert processors[0].get_response_status_code() == status
    assert out[0]["error"]["code"] == code


def test_image_over_the_pixel_limit_gets_413(
    handler: Any,
    context_factory: Callable[[], Any],
    sample_jpegs: Callable[[int, int], list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handler, "max_pixels", 100 * 100)
    out, processors = run(handler, context_factory, [{"data": sample_jpegs(1, 2)[0].read_bytes()}])
    assert processors[0].get_response_status_code() == 413
    assert out[0]["error"]["code"] == "image_too_large"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_alpha_and_palette_images_decode_to_three_channels(
    handler: Any, context_factory: Callable[[], Any], mode: str
) -> None:
    buf = io.BytesIO()
    Image.new(mode, (200, 120)).save(buf, format="PNG")
    out, processors = run(handler, context_factory, [{"data": buf.getvalue()}])
    assert processors[0].get_response_status_code() == 200
    assert out[0]["image"] == {"width": 200, "height": 120}


def test_parity_with_ultralytics_predict(
    handler: Any,
    context_factory: Callable[[], Any],
    yolo: Any,
    sample_jpegs: Callable[[int, int], list[Path]],
) -> None:
    paths = sample_jpegs(5, 3)
    compared = 0
    for path in paths:
        out, _ = run(handler, context_factory, [{"data": path.read_bytes(), "conf": b"0.001"}])
        result = yolo.predict(str(path), imgsz=IMGSZ, conf=PARITY_CONF, iou=0.7, verbose=False)[0]
        assert (out[0]["image"]["height"], out[0]["image"]["width"]) == result.orig_shape
        assert_same_boxes(out[0]["boxes"], result)
        compared += len(out[0]["boxes"])
    assert compared > 0


def test_parity_of_a_mixed_shape_batch(
    handler: Any,
    context_factory: Callable[[], Any],
    yolo: Any,
    sample_jpegs: Callable[[int, int], list[Path]],
) -> None:
    # Images of different shapes share one square-letterboxed forward, as Ultralytics batches them.
    paths = sample_jpegs(3, 4)
    assert len({Image.open(p).size for p in paths}) > 1
    out, _ = run(
        handler, context_factory, [{"data": p.read_bytes(), "conf": b"0.001"} for p in paths]
    )
    results = yolo.predict(
        [str(p) for p in paths], imgsz=IMGSZ, conf=PARITY_CONF, batch=len(paths), verbose=False
    )
    for response, result in zip(out, results, strict=True):
        assert_same_boxes(response["boxes"], result)


def test_exif_orientation_is_applied_like_ultralytics(
    handler: Any,
    context_factory: Callable[[], Any],
    yolo: Any,
    sample_jpegs: Callable[[int, int], list[Path]],
    tmp_path: Path,
) -> None:
    # A camera JPEG stored landscape with "rotate 90 CW" in EXIF: Ultralytics' imread (OpenCV)
    # applies the tag, so the boxes refer to the upright (portrait) image.
    image = Image.open(sample_jpegs(1, 5)[0])
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, quality=90, exif=exif.tobytes())
    out, _ = run(handler, context_factory, [{"data": path.read_bytes(), "conf": b"0.001"}])
    assert out[0]["image"] == {"width": image.height, "height": image.width}
    result = yolo.predict(str(path), imgsz=IMGSZ, conf=PARITY_CONF, verbose=False)[0]
    assert_same_boxes(out[0]["boxes"], result)


@pytest.fixture
def fresh_handler(
    handler_module: ModuleType, context_factory: Callable[[], Any]
) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Initialise a handler with handler-section overrides (no warm-up: speed)."""

    def make(overrides: dict[str, Any]) -> Any:
        context = context_factory()
        export = context.model_yaml_config["export"]
        context.model_yaml_config = {"handler": {"warmup": False, **overrides}, "export": export}
        instance = handler_module.YoloHandler()
        instance.initialize(context)
        return instance

    import torch

    threads = torch.get_num_threads()
    yield make
    torch.set_num_threads(threads)


def test_yaml_overrides_and_defaults(fresh_handler: Callable[[dict[str, Any]], Any]) -> None:
    custom = fresh_handler(
        {"imgsz": 300, "conf": 0.4, "iou": 0.5, "max_det": 7, "torch_threads": 1}
    )
    assert custom.imgsz == [320, 320]  # rounded up to a multiple of the stride, as Ultralytics does
    assert (custom.defaults.conf, custom.defaults.iou, custom.defaults.max_det) == (0.4, 0.5, 7)
    assert custom.threads == 1
    with pytest.raises(Exception, match="conf"):
        fresh_handler({"conf": 3})
