"""TorchServe handler for an Ultralytics YOLO detector, batched and in original pixel coordinates.

The handler is packed into the ``.mar`` with its package ``yolo_detector`` and runs inside
TorchServe's Python worker on the export the version was packaged with (ONNX Runtime, OpenVINO or
TorchScript: ``export:`` section of the model YAML, written by the packager). It imports numpy,
OpenCV, PIL, the standard library and that runtime: never Ultralytics, torchvision or
``yoloserve``; TorchServe's worker itself imports a CPU torch. TorchServe instantiates *the one
class* defined in this module (it refuses a module with more).

It reproduces Ultralytics' ``DetectionPredictor`` step by step, in ``yolo_detector``'s modules, so
that a request answers what ``YOLO(weights).predict(path, imgsz=..., conf=..., iou=...)`` answers
for the same image (the packager checks it on real photos before a version is registered):

* decode like ``ultralytics.utils.patches.imread`` (``yolo_detector.decode``);
* letterbox like ``LetterBox`` with the predictor's arguments and normalise like
  ``BasePredictor.preprocess`` (``yolo_detector.letterbox``);
* one forward of the whole batch through the export's runtime (``yolo_detector.runtimes``), with
  thread counts set here rather than left to each runtime's own guess;
* per request ``non_max_suppression`` with that request's ``conf``/``iou``/``max_det``, then
  ``scale_boxes`` back to the decoded image's pixels (``yolo_detector.postprocess``).

Request item (one per request in a TorchServe batch): the image is the part ``data`` or ``body``,
as bytes, or a JSON object ``{"image": "<base64>", "conf": .., "iou": .., "max_det": ..}``;
multipart text parts ``conf``, ``iou`` and ``max_det`` override the defaults of the model YAML
(``handler:`` section), as do the request headers ``X-Yolo-Conf``, ``X-Yolo-Iou`` and
``X-Yolo-Max-Det``, which is how the gateway sends them: the image as the raw body with its
thresholds in headers costs the frontend less than a multipart body to parse (docs/benchmarks.md,
the hops section). Response per request::

    {"model": {"name": "yolo", "version": "3"},
     "image": {"width": 640, "height": 480},
     "boxes": [{"xyxy": [x1, y1, x2, y2], "conf": 0.97, "cls": 2, "name": "triangle"}],
     "timing_ms": {"preprocess": 1.2, "inference": 30.1, "postprocess": 2.0}}

or, for that request only, ``{"error": {"code": ..., "message": ...}}`` with status 400 (bad
parameter or request), 413 (image too large) or 415 (not a decodable image). ``inference`` is the
wall time of the batch forward the request shared; the other two are the request's own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from yolo_detector.decode import decode_image
from yolo_detector.letterbox import check_imgsz, to_batch
from yolo_detector.postprocess import non_max_suppression, scale_boxes
from yolo_detector.requests import Params, RequestError, header_params, parse_params, split_request
from yolo_detector.runtimes.base import Runtime, RuntimeOptions
from yolo_detector.runtimes.factory import load_runtime

__all__ = ["YoloHandler", "decode_image", "parse_params", "split_request"]

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "imgsz": 320,
    "conf": 0.25,
    "iou": 0.7,
    "max_det": 300,
    "torch_threads": 0,  # intra-op threads of the runtime; 0 = one per CPU core
    "max_image_pixels": 40_000_000,
    "warmup": True,
    "device": "cpu",  # "cuda" / "cuda:1": ONNX Runtime's CUDA provider, TorchScript on CUDA
    # ONNX Runtime providers in order of preference; empty = CUDA on a GPU device, else CPU.
    # ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"] for TensorRT.
    "onnx_providers": [],
    # ONNX Runtime's intra-op threads spin between ops by default: on a small box they burn CPU
    # the gateway, the frontend and a loading worker need (docs/benchmarks.md: off, 8 clients
    # got 1.4x the throughput through the gateway at the same lone-request latency).
    "onnx_spinning": False,
}
# What the packager writes into the per-version model YAML (``export:``).
EXPORT_DEFAULTS: dict[str, Any] = {"runtime": None, "file": None, "dynamic": True}


class YoloHandler:
    """Batched YOLO detection whose answers equal Ultralytics' ``predict``."""

    RequestError = RequestError
    Params = Params

    @dataclass
    class Item:
        """One request of a batch as it moves through the stages (nested: TorchServe takes the
        one class defined at this module's level as the handler)."""

        params: Params | None = None
        image: np.ndarray | None = None  # decoded BGR uint8, HxWx3
        error: RequestError | None = None
        det: np.ndarray | None = None  # (n, 6): xyxy in image pixels, conf, cls
        timing: dict[str, float] = field(default_factory=dict)

    def __init__(self) -> None:
        self.context: Any = None
        self.manifest: dict[str, Any] | None = None
        self.model: Runtime | None = None
        self.initialized = False
        self.defaults = Params(DEFAULTS["conf"], DEFAULTS["iou"], DEFAULTS["max_det"])
        self.imgsz: list[int] = [DEFAULTS["imgsz"], DEFAULTS["imgsz"]]
        self.max_pixels: int = DEFAULTS["max_image_pixels"]
        self.model_name = "yolo"
        self.model_version = "0"
        self.names: dict[int, str] = {}
        self.threads = 1
        self.runtime = ""
        self.rect = True

    # ------------------------------------------------------------------------------ lifecycle

    def initialize(self, context: Any) -> None:
        """Load the export, read the model YAML, set thread counts and warm up.

        Args:
            context: TorchServe context (``system_properties['model_dir']``, ``manifest``,
                ``model_yaml_config`` with ``handler:`` and ``export:`` sections).

        Raises:
            ValueError: the YAML names no export (an archive packaged for the ``.pt`` itself,
                which this worker cannot run without Ultralytics), or an unknown runtime.
        """
        self.context = context
        self.manifest = context.manifest
        model_meta = (self.manifest or {}).get("model", {})
        self.model_name = str(model_meta.get("modelName", self.model_name))
        self.model_version = str(model_meta.get("modelVersion", self.model_version))
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        cfg = {**DEFAULTS, **(yaml_config.get("handler") or {})}
        export = {**EXPORT_DEFAULTS, **(yaml_config.get("export") or {})}
        if not export["runtime"] or not export["file"]:
            raise ValueError(
                "the model YAML names no export (export: runtime/file): this archive serves its "
                ".pt, which needs Ultralytics; repackage it (make package RUNTIME=onnx)"
            )
        self.runtime = str(export["runtime"])
        # TorchServe may export OMP_NUM_THREADS to its workers and each runtime guesses its own
        # count: the thread count is a decision, made here.
        self.threads = int(cfg["torch_threads"]) or (os.cpu_count() or 1)
        options = RuntimeOptions(
            threads=self.threads,
            device=str(cfg["device"]),
            onnx_providers=list(cfg["onnx_providers"] or []),
            onnx_spinning=bool(cfg["onnx_spinning"]),
        )
        model_dir = Path(context.system_properties["model_dir"])
        self.model = load_runtime(self.runtime, model_dir / str(export["file"]), options)
        # predict() letterboxes to the minimum rectangle only for models that take any shape.
        self.rect = bool(export["dynamic"])
        self.names = dict(self.model.info.names)
        self.imgsz = list(check_imgsz(int(cfg["imgsz"]), self.model.info.stride))
        self.defaults = parse_params([cfg], self.defaults)
        self.max_pixels = int(cfg["max_image_pixels"])
        if cfg["warmup"]:
            self._warmup()
        self.initialized = True
        logger.info(
            "yolo handler ready: %s v%s, %s runtime (%s, %s), imgsz %s, defaults %s",
            self.model_name, self.model_version, self.runtime, export["file"],
            self.model.settings(), self.imgsz, self.defaults,
        )

    def _warmup(self) -> None:
        # The first forward at an input shape builds its kernels (+15-60 ms on 2 cores). A lone
        # image is letterboxed to a stride-multiple rectangle, so warm the square of mixed batches
        # and every rectangle of aspect ratios up to 2:1, both ways: load time, not the first
        # user's request, pays for it.
        h, w = self.imgsz
        stride = self.model.info.stride if self.model else 32
        shapes = {(h, w)}
        for short in range(h // 2 // stride * stride, h, stride):
            shapes |= {(short, w), (h, short * w // h)}
        for shape in sorted(shapes):
            image = np.full((*shape, 3), 114, np.uint8)
            self._run([self.Item(params=self.defaults, image=image)])

    # ------------------------------------------------------------------------------ stages

    def handle(self, data: list[Mapping[str, Any]], context: Any) -> list[dict[str, Any]]:
        """Answer a TorchServe batch: one response dict per request, in order.

        Args:
            data: one mapping per request (parts by name, or ``body``).
            context: TorchServe context; per-request statuses are set on it.

        Returns:
            A JSON-serialisable dict per request: detections, or an error object.
        """
        start = time.perf_counter()
        self.context = context
        output = self.postprocess(self.inference(self.preprocess(data)))
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            elapsed_ms = round((time.perf_counter() - start) * 1e3, 2)
            metrics.add_time("HandlerTime", elapsed_ms, None, "ms")
        return output

    def preprocess(self, data: list[Mapping[str, Any]]) -> list[Item]:
        """Parse and decode every request; a bad one is marked, the others go on."""
        items = []
        for idx, request in enumerate(data):
            t0 = time.perf_counter()
            item = self.Item()
            try:
                image_bytes, sources = split_request(request)
                item.params = parse_params([self._header_params(idx), *sources], self.defaults)
                item.image = decode_image(image_bytes, self.max_pixels)
            except RequestError as exc:
                item.error = exc
            item.timing["preprocess"] = (time.perf_counter() - t0) * 1e3
            items.append(item)
        return items

    def _header_params(self, idx: int) -> dict[str, Any]:
        processors = getattr(self.context, "request_processor", None)
        if not processors or idx >= len(processors):
            return {}  # called without a server (tests, benchmarks)
        return header_params(processors[idx].get_request_properties() or {})

    def inference(self, data: list[Item], *args: Any, **kwargs: Any) -> list[Item]:
        """Detect on every decoded image of the batch in one forward."""
        valid = [item for item in data if item.error is None]
        if valid:
            self._run(valid)
        return data

    def _run(self, items: list[Item]) -> None:
        assert self.model is not None, "initialize() loads the model"
        t0 = time.perf_counter()
        images = [item.image for item in items if item.image is not None]
        batch = to_batch(images, (self.imgsz[0], self.imgsz[1]), stride=self.model.info.stride,
                         rect=self.rect)
        t1 = time.perf_counter()
        pred = self.model.forward(batch)
        t2 = time.perf_counter()
        for i, item in enumerate(items):
            t3 = time.perf_counter()
            assert item.params is not None and item.image is not None
            det = non_max_suppression(
                pred[i], conf=item.params.conf, iou=item.params.iou,
                max_det=item.params.max_det, end2end=self.model.info.end2end,
            )
            det[:, :4] = scale_boxes(batch.shape[2:], det[:, :4], item.image.shape)
            item.det = det
            item.timing["preprocess"] = item.timing.get("preprocess", 0.0) + (t1 - t0) * 1e3 / len(
                items
            )
            item.timing["inference"] = (t2 - t1) * 1e3
            item.timing["postprocess"] = (time.perf_counter() - t3) * 1e3

    def postprocess(self, data: list[Item]) -> list[dict[str, Any]]:
        """Build each request's JSON and set the status of failed ones."""
        output: list[dict[str, Any]] = []
        for idx, item in enumerate(data):
            response: dict[str, Any]
            if item.error is not None:
                if self.context is not None:
                    self.context.set_response_status(item.error.status, item.error.message, idx)
                response = {"error": {"code": item.error.code, "message": item.error.message}}
            else:
                t0 = time.perf_counter()
                response = self._detections(item)
                item.timing["postprocess"] += (time.perf_counter() - t0) * 1e3
                response["timing_ms"] = {k: round(v, 2) for k, v in item.timing.items()}
            self._set_headers(idx)
            output.append(response)
        return output

    def _set_headers(self, idx: int) -> None:
        if getattr(self.context, "request_processor", None) is None:
            return  # called without a server (tests, benchmarks)
        # TorchServe sends no Content-Type for a dict it serialises; the gateway checks it.
        self.context.set_response_content_type(idx, "application/json")
        # The gateway reads the version from the body; the header is for curl users.
        self.context.set_response_header(idx, "X-Model-Version", self.model_version)

    def _detections(self, item: Item) -> dict[str, Any]:
        assert item.det is not None and item.image is not None
        det = item.det
        order = np.argsort(-det[:, 4], kind="stable")  # NMS sorts already; the contract insists
        height, width = item.image.shape[:2]
        return {
            "model": {"name": self.model_name, "version": self.model_version},
            "image": {"width": int(width), "height": int(height)},
            "boxes": [
                {
                    "xyxy": [round(float(v), 2) for v in row[:4]],
                    "conf": round(float(row[4]), 4),
                    "cls": int(row[5]),
                    "name": self.names.get(int(row[5]), str(int(row[5]))),
                }
                for row in det[order]
            ],
        }
