"""The handler on every runtime it can be packaged with, run with TorchServe's own ``Context``.

Each runtime is staged exactly as packaging lays out a ``.mar`` (``packaging.stage``: the export,
the ``.pt`` and a model YAML naming the export), then loaded by ``LocalHandler`` as a worker would.
Its boxes must equal in-process ``YOLO(best.pt).predict`` on the same file (same classes, 0.5 px,
1e-3) for grey, RGBA, PNG, JPEG and EXIF-rotated JPEG photos, alone and as one mixed batch. The
handler runs none of Ultralytics' code: its letterbox, NMS and box scaling are its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import assert_same_boxes
from yoloserve.modelserver.export import FLOAT_RUNTIMES
from yoloserve.modelserver.local_handler import LocalHandler
from yoloserve.modelserver.packaging import stage

IMGSZ = 320  # serving/model-config.yaml
PARITY_CONF = 0.01  # low, so every photo has boxes to compare


@pytest.fixture(scope="module", params=FLOAT_RUNTIMES)
def runtime_handler(
    request: pytest.FixtureRequest, default_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LocalHandler]]:
    staged = stage(default_weights, request.param, tmp_path_factory.mktemp(request.param))
    yield request.param, LocalHandler(staged.model_dir, default_weights.name, version="5")


def test_the_staged_runtime_is_what_the_handler_runs(
    runtime_handler: tuple[str, LocalHandler],
) -> None:
    runtime, local = runtime_handler
    assert local.handler.runtime == runtime
    # Every dynamic export letterboxes a lone image to the minimum rectangle, as predict.
    assert local.handler.rect
    assert local.handler.model.family == runtime
    settings = local.handler.model.settings()
    if runtime == "onnx":
        assert settings["intra_op_threads"] == local.handler.threads
        assert settings["providers"] == ["CPUExecutionProvider"]
    if runtime == "openvino":
        assert "float32" in settings["precision"]  # never bf16 on an AMX / AVX512-BF16 CPU
        assert settings["threads"] == local.handler.threads


@pytest.mark.parametrize("kind", ["grey", "rgba", "png", "jpeg", "exif_jpeg", "scene"])
def test_parity_with_ultralytics_predict_on_real_photos(
    runtime_handler: tuple[str, LocalHandler], reference: Any, photos: dict[str, Path], kind: str
) -> None:
    _, local = runtime_handler
    path = photos[kind]
    answer = local.predict(path.read_bytes(), conf=PARITY_CONF)
    result = reference.predict(str(path), imgsz=IMGSZ, conf=PARITY_CONF, verbose=False)[0]
    assert answer["image"] == {"width": result.orig_shape[1], "height": result.orig_shape[0]}
    assert len(result.boxes) > 0, "a weak model still finds boxes at this threshold"
    assert_same_boxes(answer["boxes"], result)


def test_a_mixed_batch_runs_in_one_forward_with_per_request_thresholds(
    runtime_handler: tuple[str, LocalHandler], reference: Any, photos: dict[str, Path]
) -> None:
    _, local = runtime_handler
    kinds = ["grey", "exif_jpeg", "scene"]
    requests: list[dict[str, Any]] = [
        {"data": photos[kind].read_bytes(), "conf": str(conf).encode()}
        for kind, conf in zip(kinds, (PARITY_CONF, 0.05, 0.25), strict=True)
    ]
    requests.insert(1, {"data": b"not an image"})
    answers = local.handler.handle(requests, local._context)
    assert answers[1]["error"]["code"] == "invalid_image"
    good = [answers[0], answers[2], answers[3]]
    for kind, conf, answer in zip(kinds, (PARITY_CONF, 0.05, 0.25), good, strict=True):
        # Shapes differ, so the batch letterboxes to the square, as predict does for such a list.
        result = reference.predict(
            [str(photos[k]) for k in kinds], imgsz=IMGSZ, conf=conf, verbose=False
        )[kinds.index(kind)]
        assert_same_boxes(answer["boxes"], result)
        assert min((b["conf"] for b in answer["boxes"]), default=1.0) >= conf


def test_thresholds_in_request_headers_apply_per_request(
    runtime_handler: tuple[str, LocalHandler], reference: Any, photos: dict[str, Path]
) -> None:
    """What the gateway sends: the image as the body, thresholds in headers (any case)."""
    from ts.context import RequestProcessor

    _, local = runtime_handler
    image = photos["scene"].read_bytes()
    context = local._context
    context.request_processor = [
        RequestProcessor({"X-Yolo-Conf": "0.01", "x-yolo-max-det": "2"}),
        RequestProcessor({"x-yolo-conf": "0.9"}),
        RequestProcessor({"X-Yolo-Iou": "2"}),
    ]
    try:
        answers = local.handler.handle([{"body": image}] * 3, context)
    finally:
        context.request_processor = None
    assert len(answers[0]["boxes"]) == 2
    result = reference.predict(str(photos["scene"]), imgsz=IMGSZ, conf=0.9, verbose=False)[0]
    assert_same_boxes(answers[1]["boxes"], result)
    assert answers[2]["error"]["code"] == "invalid_parameter"
