"""TorchServe handler for an Ultralytics YOLO detector, batched and in original pixel coordinates.

The handler is packed into the ``.mar`` and runs inside TorchServe's Python worker, so it imports
only torch, ultralytics, numpy, PIL, OpenCV, the standard library and the runtime of its export
(onnxruntime or openvino, when the version was packaged so): never ``yoloserve``.
TorchServe instantiates *the one class* defined at module level (it refuses a module with more),
so the small helper types live inside ``YoloHandler``.

It mirrors Ultralytics' own ``DetectionPredictor`` step by step so that a request answers exactly
what ``YOLO(weights).predict(path, imgsz=..., conf=..., iou=...)`` answers for the same image:

* decode like ``ultralytics.utils.patches.imread`` (``cv2.imdecode``, which applies the EXIF
  orientation of JPEGs; PIL with ``exif_transpose`` for what OpenCV cannot read), BGR uint8;
* ``LetterBox`` with the predictor's arguments (minimum rectangle when every image of the batch has
  the same shape, square ``imgsz`` otherwise), HWC -> CHW, BGR -> RGB, ``/ 255``;
* one forward of the whole batch through ``AutoBackend`` (Conv+BN fused, channels-last on CPU, as
  the predictor builds it) running the runtime the version was packaged with: the ``.pt``, or its
  ONNX / OpenVINO / TorchScript export (``export:`` section of the model YAML, written by the
  packager), with thread counts set here rather than left to each runtime's own guess;
* per request ``non_max_suppression`` with that request's ``conf``/``iou``/``max_det``, then
  ``scale_boxes`` back to the decoded image's pixels (no resize-and-crop anywhere).

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

import base64
import binascii
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "imgsz": 320,
    "conf": 0.25,
    "iou": 0.7,
    "max_det": 300,
    "torch_threads": 0,  # 0 = one per CPU core
    "max_image_pixels": 40_000_000,
    "warmup": True,
    "device": "cpu",  # "cuda" / "cuda:1": ONNX Runtime's CUDA provider, PyTorch / TorchScript CUDA
    # ONNX Runtime providers in order of preference; empty = CUDA on a GPU device, else CPU.
    # ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"] for TensorRT.
    "onnx_providers": [],
    # ONNX Runtime's intra-op threads spin between ops by default: on a small box they burn CPU
    # the gateway, the frontend and a loading worker need (docs/benchmarks.md: off, 8 clients
    # got 1.4x the throughput through the gateway at the same lone-request latency).
    "onnx_spinning": False,
}
# What the packager writes into the per-version model YAML; a hand-made .mar without it serves
# its .pt, as every archive did before exported runtimes.
EXPORT_DEFAULTS: dict[str, Any] = {"runtime": "torch", "file": None, "dynamic": True}
MAX_DET_LIMIT = 1000  # the public contract caps max_det at 1000
# Request headers that carry a request's thresholds (lower-case: HTTP names are case-blind).
PARAM_HEADERS = {"x-yolo-conf": "conf", "x-yolo-iou": "iou", "x-yolo-max-det": "max_det"}


def _configure_ultralytics_env() -> None:
    """Keep Ultralytics offline, with its settings in a folder it may write.

    The worker has no internet and may run as a user without a home; Ultralytics reads these
    variables when it is first imported, so this runs before that import.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "ultralytics"))


def _request_error(status: int, code: str, message: str) -> Exception:
    return YoloHandler.RequestError(status, code, message)


def _number(name: str, value: Any, message: str) -> float:
    if isinstance(value, bool):  # JSON true is an int to Python, never a threshold
        raise _request_error(400, "invalid_parameter", message)
    if isinstance(value, int | float):
        return float(value)
    try:
        text = bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value)
        return float(text.strip())
    except (ValueError, UnicodeDecodeError):
        raise _request_error(400, "invalid_parameter", f"{message}, got {_shown(value)}") from None


def _shown(value: Any) -> str:
    # Multipart text parts arrive as bytes: show what the client typed, not bytearray(b'...').
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:40]).decode("utf-8", errors="replace")
    return repr(value)


def _unit_interval(name: str, value: Any) -> float:
    message = f"{name} must be a number in [0, 1]"
    number = _number(name, value, message)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise _request_error(400, "invalid_parameter", f"{message}, got {_shown(value)}")
    return number


def _max_det(value: Any) -> int:
    message = f"max_det must be an integer in [1, {MAX_DET_LIMIT}]"
    number = _number("max_det", value, message)
    if not (math.isfinite(number) and number.is_integer() and 1 <= number <= MAX_DET_LIMIT):
        raise _request_error(400, "invalid_parameter", f"{message}, got {_shown(value)}")
    return int(number)


def parse_params(sources: list[Mapping[str, Any]], defaults: YoloHandler.Params) -> Any:
    """Merge ``conf``/``iou``/``max_det`` from ``sources`` (later wins) over ``defaults``.

    Args:
        sources: mappings that may hold the keys (a JSON body, the request's parts).
        defaults: values for keys no source sets.

    Returns:
        A ``YoloHandler.Params``.

    Raises:
        YoloHandler.RequestError: 400 when a value is not a number in its range.
    """
    conf, iou, max_det = defaults.conf, defaults.iou, defaults.max_det
    for source in sources:
        if source.get("conf") is not None:
            conf = _unit_interval("conf", source["conf"])
        if source.get("iou") is not None:
            iou = _unit_interval("iou", source["iou"])
        if source.get("max_det") is not None:
            max_det = _max_det(source["max_det"])
    return YoloHandler.Params(conf=conf, iou=iou, max_det=max_det)


def _b64decode(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL, as browsers produce them
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _request_error(415, "invalid_image", "image is not valid base64") from None


def split_request(item: Mapping[str, Any]) -> tuple[bytes, list[Mapping[str, Any]]]:
    """Find the image bytes of one request and the mappings its parameters may come from.

    TorchServe hands the handler raw bytes for a binary body or a file part, a ``str`` for a text
    part and an already parsed ``dict`` for an ``application/json`` body; a JSON body sent with
    another content type arrives as bytes starting with ``{`` (no image format starts so).

    Args:
        item: one request of the batch, parts by name (``data``, ``conf``, ...) or ``body``.

    Returns:
        The image bytes, and the parameter sources in increasing priority.

    Raises:
        YoloHandler.RequestError: 400 when no image is present or the JSON is malformed, 415 when
            the JSON body's image is not base64.
    """
    payload = item.get("data")
    if payload is None:
        payload = item.get("body")
    if isinstance(payload, str):
        payload = payload.encode() if payload.lstrip().startswith("{") else _b64decode(payload)
    if isinstance(payload, bytes | bytearray) and bytes(payload[:1]) == b"{":
        try:
            payload = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = "the body starts with '{' but is not JSON"
            raise _request_error(400, "invalid_request", message) from None
    if isinstance(payload, dict):
        image = payload.get("image")
        if not isinstance(image, str) or not image:
            raise _request_error(400, "missing_image", "JSON body needs 'image': a base64 string")
        return _b64decode(image), [payload, item]
    if isinstance(payload, bytes | bytearray) and payload:
        return bytes(payload), [item]
    raise _request_error(400, "missing_image", "no image in the request (part 'data' or the body)")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes to BGR uint8 HxWx3, exactly as Ultralytics' ``imread`` reads a file.

    ``cv2.imdecode`` with ``IMREAD_COLOR`` applies the EXIF orientation of JPEGs and turns grey,
    alpha and 16-bit images into 8-bit BGR; formats OpenCV cannot read go through PIL upright, as
    Ultralytics' own PIL fallback does. Boxes are thus in the pixel grid of the upright image, the
    one a browser shows.

    Args:
        data: the encoded image.
        max_pixels: refuse images with more pixels than this.

    Returns:
        The decoded image, BGR uint8 of shape (H, W, 3).

    Raises:
        YoloHandler.RequestError: 415 when the bytes are no image, 413 when it is too large.
    """
    try:  # PIL reads only the header here: refuse decompression bombs before decoding them
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception:  # Ultralytics patches Image.open, which then raises its own errors too
        width = height = 0  # not every format OpenCV reads is known to PIL; the decoders decide
    if width * height > max_pixels:
        message = f"{width}x{height} exceeds {max_pixels} pixels"
        raise _request_error(413, "image_too_large", message)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        try:
            with Image.open(io.BytesIO(data)) as pil:
                rgb = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
            image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        except Exception:  # every decoder failure means the same thing to the client
            message = "not a decodable image (JPEG, PNG, WebP, BMP, TIFF, GIF, ...)"
            raise _request_error(415, "invalid_image", message) from None
    if image.ndim != 3 or image.shape[2] != 3 or not all(image.shape):
        raise _request_error(415, "invalid_image", f"unsupported image shape {image.shape}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise _request_error(413, "image_too_large", f"image exceeds {max_pixels} pixels")
    return image


class YoloHandler(BaseHandler):
    """Batched YOLO detection whose answers equal Ultralytics' ``predict``."""

    class RequestError(Exception):
        """A problem with one request of a batch; it fails that request only."""

        def __init__(self, status: int, code: str, message: str) -> None:
            super().__init__(message)
            self.status = status
            self.code = code
            self.message = message

    @dataclass(frozen=True)
    class Params:
        """Detection thresholds of one request."""

        conf: float
        iou: float
        max_det: int

    @dataclass
    class Item:
        """One request of a batch as it moves through the stages."""

        params: Any = None  # YoloHandler.Params
        image: np.ndarray | None = None  # decoded BGR uint8, HxWx3
        error: Any = None  # YoloHandler.RequestError
        det: torch.Tensor | None = None  # (n, 6): xyxy in image pixels, conf, cls
        timing: dict[str, float] = field(default_factory=dict)

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None
        self.defaults = self.Params(DEFAULTS["conf"], DEFAULTS["iou"], DEFAULTS["max_det"])
        self.imgsz: list[int] = [DEFAULTS["imgsz"], DEFAULTS["imgsz"]]
        self.max_pixels: int = DEFAULTS["max_image_pixels"]
        self.model_name = "yolo"
        self.model_version = "0"
        self.names: dict[int, str] = {}
        self.threads = 1
        self.runtime = "torch"
        self.rect = True
        self._letterbox: Any = None
        self._nms: Any = None
        self._scale_boxes: Any = None

    # ------------------------------------------------------------------------------ lifecycle

    def initialize(self, context: Any) -> None:
        """Load the weights, read the model YAML, set torch threads and warm up.

        Args:
            context: TorchServe context (``system_properties['model_dir']``, ``manifest``,
                ``model_yaml_config`` with an optional ``handler:`` section).
        """
        _configure_ultralytics_env()
        from ultralytics.data.augment import LetterBox
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        self.context = context
        self.manifest = context.manifest
        model_meta = (self.manifest or {}).get("model", {})
        self.model_name = str(model_meta.get("modelName", self.model_name))
        self.model_version = str(model_meta.get("modelVersion", self.model_version))
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        cfg = {**DEFAULTS, **(yaml_config.get("handler") or {})}

        export = {**EXPORT_DEFAULTS, **(yaml_config.get("export") or {})}
        self.runtime = str(export["runtime"])
        model_dir = Path(context.system_properties["model_dir"])
        if self.runtime == "torch":
            weights = self._find_weights(model_dir, model_meta.get("serializedFile"))
        else:
            weights = model_dir / str(export["file"])
            if not weights.exists():
                raise FileNotFoundError(f"the {self.runtime} export {weights} is not in the .mar")
        # Ultralytics' select_device() would leave 1 thread on a 2-core box, and TorchServe may
        # export OMP_NUM_THREADS to its workers: the thread count is a decision, made here.
        self.threads = int(cfg["torch_threads"]) or (os.cpu_count() or 1)
        torch.set_num_threads(self.threads)
        device = torch.device(str(cfg["device"]))
        # Built like DetectionPredictor.setup_model: fused Conv+BN, channels-last on x86 CPUs.
        self.model = AutoBackend(str(weights), device=device, fuse=True, verbose=False)
        self.model.eval()
        self._tune_runtime(weights, device, cfg)
        # predict() letterboxes to the minimum rectangle only for models that take any shape.
        self.rect = self.runtime == "torch" or bool(export["dynamic"])
        self.names = {int(k): str(v) for k, v in self.model.names.items()}
        self.imgsz = check_imgsz(int(cfg["imgsz"]), stride=self.model.stride, min_dim=2)
        self.defaults = parse_params([cfg], self.defaults)
        self.max_pixels = int(cfg["max_image_pixels"])
        self._letterbox, self._nms, self._scale_boxes = LetterBox, non_max_suppression, scale_boxes
        if cfg["warmup"]:
            self._warmup()
        self.initialized = True
        logger.info(
            "yolo handler ready: %s v%s, %s runtime (%s), imgsz %s, defaults %s, %d threads",
            self.model_name, self.model_version, self.runtime, weights.name, self.imgsz,
            self.defaults, self.threads,
        )

    def _tune_runtime(self, weights: Path, device: torch.device, cfg: Mapping[str, Any]) -> None:
        """Rebuild the exported runtime's session with the settings chosen here.

        AutoBackend builds ONNX Runtime and OpenVINO sessions with their own defaults: ORT with
        inter-op threads of its choosing, OpenVINO with bf16 inference wherever the CPU has AMX or
        AVX512-BF16, which moves confidences by ~0.01 and breaks parity with the ``.pt``. The
        session is built again, once, at load time.
        """
        backend = self.model.backend
        if self.runtime == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1  # one graph at a time: a YOLO graph is a chain
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            spinning = "1" if cfg["onnx_spinning"] else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
            chosen = list(cfg["onnx_providers"] or []) or backend.session.get_providers()
            backend.session = ort.InferenceSession(str(weights), options, providers=chosen)
            logger.info("ONNX Runtime %s providers %s", ort.__version__, chosen)
        elif self.runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            xml = weights if weights.is_file() else next(weights.glob("*.xml"))
            config = {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": self.threads,
            }
            target = "GPU" if device.type == "cuda" else "CPU"  # an Intel GPU, for OpenVINO
            model = core.read_model(str(xml))
            backend.ov_compiled_model = core.compile_model(model, target, config)

    @staticmethod
    def _find_weights(model_dir: Path, serialized: str | None) -> Path:
        if serialized and (model_dir / serialized).is_file():
            return model_dir / serialized
        candidates = sorted(model_dir.glob("*.pt"))
        if not candidates:
            raise FileNotFoundError(f"no .pt weights in {model_dir}")
        return candidates[0]

    def _warmup(self) -> None:
        # The first forward at an input shape builds its oneDNN kernels (+15-60 ms on 2 cores).
        # A lone image is letterboxed to a stride-multiple rectangle, so warm the square of mixed
        # batches and every rectangle of aspect ratios up to 2:1, both ways: load time, not the
        # first user's request, pays for it.
        h, w = self.imgsz
        stride = int(self.model.stride)
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
            except self.RequestError as exc:
                item.error = exc
            item.timing["preprocess"] = (time.perf_counter() - t0) * 1e3
            items.append(item)
        return items

    def _header_params(self, idx: int) -> dict[str, str]:
        processors = getattr(self.context, "request_processor", None)
        if not processors or idx >= len(processors):
            return {}  # called without a server (tests, benchmarks)
        headers = processors[idx].get_request_properties() or {}
        return {
            PARAM_HEADERS[name.lower()]: value
            for name, value in headers.items()
            if isinstance(name, str) and name.lower() in PARAM_HEADERS
        }

    def inference(self, data: list[Item], *args: Any, **kwargs: Any) -> list[Item]:
        """Detect on every decoded image of the batch in one forward."""
        valid = [item for item in data if item.error is None]
        if valid:
            self._run(valid)
        return data

    @torch.inference_mode()
    def _run(self, items: list[Item]) -> None:
        t0 = time.perf_counter()
        images: list[np.ndarray] = [item.image for item in items]
        # BasePredictor.pre_transform: auto (minimum rectangle) only when one shape fits all.
        same_shapes = len({im.shape for im in images}) == 1
        letterbox = self._letterbox(
            self.imgsz, auto=same_shapes and self.rect, stride=self.model.stride
        )
        boxed = [letterbox(image=im) for im in images]
        # BasePredictor.preprocess, op for op, so the input tensor (and the result) is identical.
        if len(boxed) == 1:
            tensor = torch.from_numpy(boxed[0]).unsqueeze(0)
        else:
            tensor = torch.from_numpy(np.stack(boxed))
        tensor = tensor.permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
        tensor = tensor.to(self.model.device)
        t1 = time.perf_counter()
        preds = self.model(tensor)
        t2 = time.perf_counter()
        pred = preds[0] if isinstance(preds, list | tuple) else preds
        end2end = bool(getattr(self.model, "end2end", False))
        for i, item in enumerate(items):
            t3 = time.perf_counter()
            det = self._nms(
                pred[i : i + 1],
                item.params.conf,
                item.params.iou,
                None,  # all classes
                False,  # class-aware NMS, as predict's default agnostic_nms=False
                max_det=item.params.max_det,
                nc=0,
                end2end=end2end,
            )[0]
            det[:, :4] = self._scale_boxes(tensor.shape[2:], det[:, :4], item.image.shape)
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
        det = item.det.cpu().numpy()
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
