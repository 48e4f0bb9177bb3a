"""One prediction, end to end: upload checks, model server call, embeddings, response.

Routes stay thin shells over :func:`predict_upload`; the feedback route reuses it too. The image
comes as the multipart part ``file`` or, for ``/predict`` and ``/predict/image``, as the raw
request body with an ``image/*`` (or ``application/octet-stream``) content type:
:func:`read_image`. The raw body spares the client and the gateway the multipart encoding.

Hot swaps: while a new version replaces the default, TorchServe may answer an unpinned request
for an instant with "model not found" or 503 (set-default and unregister are separate calls).
:func:`call_model` retries such a request once after a short pause, so a swap costs a client
latency, not an error. A pinned version is never retried: its 404 means it does not exist.

Example (with a fake model server)::

    data, info = await read_upload(file, settings)
    result = await predict_upload(data, info, params, settings=settings, torchserve=ts,
                                  embedder=None, request_id="abc", started_at=perf_counter())
    result.response.model.version  # what X-Model-Version carries
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend
from gateway.metrics import GatewayMetrics
from gateway.prediction_cache import PredictionCache
from yoloserve.errors import (
    ImageTooLarge,
    InputError,
    InvalidImage,
    ModelServerBadResponse,
    ModelServerUnavailable,
)
from yoloserve.images import ImageInfo, inspect_image
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.schemas import Box, ImageSize, ModelRef, PredictResponse, Timing

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

logger = logging.getLogger("gateway.prediction")


@dataclass(frozen=True)
class PredictParams:
    """Query parameters shared by ``/predict`` and ``/predict/image``."""

    conf: float | None
    iou: float | None
    max_det: int | None
    version: str | None


async def predict_params(
    conf: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="Confidence threshold (0..1)")
    ] = None,
    iou: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="NMS IoU threshold (0..1)")
    ] = None,
    max_det: Annotated[
        int | None, Query(ge=1, le=1000, description="Maximum number of boxes (1..1000)")
    ] = None,
    version: Annotated[
        str | None,
        Query(pattern=VERSION_PATTERN, description="Pin a model version, e.g. 3"),
    ] = None,
) -> PredictParams:
    """Collect the prediction query parameters (FastAPI validates ranges: 400 when off)."""
    return PredictParams(conf=conf, iou=iou, max_det=max_det, version=version)


@dataclass(frozen=True)
class Prediction:
    """A finished prediction and what the routes need besides the response body."""

    response: PredictResponse
    image_bytes: bytes
    info: ImageInfo


async def read_upload(
    file: StarletteUploadFile, settings: Settings
) -> tuple[bytes, ImageInfo]:
    """Read the uploaded file within the size limit and check that it is a supported image.

    Raises:
        ImageTooLarge: Bigger than ``max_upload_bytes`` or ``max_image_pixels``.
        InvalidImage: Not a JPEG, PNG, WebP or BMP image.
    """
    limit = settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise ImageTooLarge(f"the image is larger than {limit} bytes")
    # Read one byte past the limit: enough to know, never the whole of an oversized file.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"the image is larger than {limit} bytes")
    return data, inspect_image(data, settings.max_image_pixels)


RAW_BODY_TYPES = ("image/", "application/octet-stream")
"""Content types of a request whose body is the image itself."""


async def read_image(request: Request, settings: Settings) -> tuple[bytes, ImageInfo]:
    """The image of a predict request: the multipart part ``file``, or the raw body.

    The route declares no body parameter (its OpenAPI document states both forms): the body is
    read here, once every query parameter was found valid, so a bad threshold is a 400 before
    the image is looked at. The body limit of ``BodyLimitMiddleware`` applies to both forms.

    Raises:
        RequestValidationError: neither form, or a ``file`` part that is no file (422, as for any
            missing field).
        InputError: a multipart body that does not parse (400).
        ImageTooLarge: bigger than ``max_upload_bytes`` (read no further) or ``max_image_pixels``.
        InvalidImage: an empty body, or not a JPEG, PNG, WebP or BMP image.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            async with request.form(max_files=1, max_fields=16) as form:
                upload = form.get("file")
                if not isinstance(upload, StarletteUploadFile):
                    raise RequestValidationError([_MISSING_FILE])
                return await read_upload(upload, settings)
        except MultiPartException as exc:
            raise InputError(f"the multipart body does not parse: {exc.message}") from exc
    if not content_type.startswith(RAW_BODY_TYPES):
        raise RequestValidationError([_MISSING_FILE])
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageTooLarge(f"the image is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ImageTooLarge(f"the image is larger than {limit} bytes")
    if not body:
        raise InvalidImage("the request body is empty: send the image as the body, or as the "
                           "multipart part 'file'")
    data = bytes(body)
    return data, inspect_image(data, settings.max_image_pixels)


_MISSING_FILE = {"type": "missing", "loc": ("body", "file"), "msg": "Field required",
                 "input": None}


def _parse_handler_answer(
    answer: dict[str, Any], info: ImageInfo
) -> tuple[ModelRef, ImageSize, list[Box]]:
    try:
        model = ModelRef.model_validate(answer.get("model"))
        boxes = [Box.model_validate(box) for box in answer.get("boxes") or []]
        image = (
            ImageSize.model_validate(answer["image"])
            if answer.get("image")
            else ImageSize(width=info.width, height=info.height)
        )
    except (ValidationError, TypeError) as exc:
        raise ModelServerBadResponse(
            f"handler answer breaks the agreed format: {exc}", upstream_status=200
        ) from exc
    boxes.sort(key=lambda box: box.conf, reverse=True)
    return model, image, boxes


async def _add_embeddings(backend: EmbeddingBackend, data: bytes, boxes: list[Box]) -> list[Box]:
    if not boxes:
        return boxes
    pixels = await run_in_threadpool(backend.decode, data)
    vectors = await run_in_threadpool(backend.embedder.embed, pixels, [box.xyxy for box in boxes])
    if len(vectors) != len(boxes):
        raise RuntimeError(f"embedder returned {len(vectors)} rows for {len(boxes)} boxes")
    return [
        box.model_copy(update={"embedding": [float(x) for x in vector]})
        for box, vector in zip(boxes, vectors, strict=True)
    ]


def _worth_retrying(exc: ModelServerUnavailable) -> bool:
    # An exhausted connection pool already waited its whole timeout; a retry would queue again.
    return not isinstance(exc.__cause__, httpx.PoolTimeout)


async def call_model(
    torchserve: TorchServeClient,
    data: bytes,
    params: PredictParams,
    *,
    retry_delay_s: float,
    metrics: GatewayMetrics | None = None,
) -> dict[str, Any]:
    """Ask the model server, retrying an unpinned request once if the server was unavailable.

    Args:
        torchserve: Model server client.
        data: The image bytes.
        params: Thresholds and version pin.
        retry_delay_s: Pause before the retry (a swap's gap lasts tens of milliseconds).
        metrics: Counts retries when given.

    Returns:
        The handler's answer.

    Raises:
        ModelServerUnavailable: Also on the retry (or on the only try of a pinned request).
        YoloServeError: Any other error, at once: bad input or an unknown pinned version is
            not going to change on a retry.
    """
    try:
        return await torchserve.predict(
            data, conf=params.conf, iou=params.iou, max_det=params.max_det, version=params.version
        )
    except ModelServerUnavailable as exc:
        if params.version is not None or not _worth_retrying(exc):
            raise
        logger.info("model server unavailable (%s), retrying once: %s", exc.code, exc.message)
        if metrics is not None:
            metrics.model_server_retries.labels(code=exc.code).inc()
    await asyncio.sleep(retry_delay_s)
    return await torchserve.predict(
        data, conf=params.conf, iou=params.iou, max_det=params.max_det, version=None
    )


async def predict_upload(
    data: bytes,
    info: ImageInfo,
    params: PredictParams,
    *,
    settings: Settings,
    torchserve: TorchServeClient,
    embedder: EmbedderProvider | None,
    request_id: str,
    started_at: float,
    metrics: GatewayMetrics | None = None,
    cache: PredictionCache | None = None,
) -> Prediction:
    """Ask the model server about an image read by :func:`read_image`, optionally embed boxes.

    Args:
        data, info: The image and what :func:`read_image` checked of it.
        params: Thresholds and version pin.
        settings: Limits.
        torchserve: Model server client.
        embedder: Embedder provider when per-box embeddings are asked for, else None.
        request_id: Goes into the response body.
        started_at: ``time.perf_counter()`` at the start of the request, for ``timing_ms.total``.
        metrics: Counts hot-swap retries when given.
        cache: Remembers the answer for a feedback on the same image (``/predict`` routes).

    Raises:
        YoloServeError: Any domain error; the gateway's error handlers answer it.
    """
    prediction = await predict_data(
        data, info, params, settings=settings, torchserve=torchserve, embedder=embedder,
        request_id=request_id, started_at=started_at, metrics=metrics,
    )
    if cache is not None:
        cache.put(data, (params.conf, params.iou, params.max_det), prediction.response)
    return prediction


async def predict_data(
    data: bytes,
    info: ImageInfo,
    params: PredictParams,
    *,
    settings: Settings,
    torchserve: TorchServeClient,
    embedder: EmbedderProvider | None,
    request_id: str,
    started_at: float,
    metrics: GatewayMetrics | None = None,
) -> Prediction:
    """:func:`predict_upload` on an upload already read and checked by :func:`read_upload`."""
    # Fail before spending model time when embeddings cannot be computed anyway.
    backend = await embedder.get() if embedder is not None else None
    model_started = time.perf_counter()
    answer = await call_model(
        torchserve, data, params, retry_delay_s=settings.predict_retry_delay_s, metrics=metrics
    )
    model_ms = (time.perf_counter() - model_started) * 1000
    model, image, boxes = _parse_handler_answer(answer, info)

    embeddings_ms: float | None = None
    if backend is not None:
        embed_started = time.perf_counter()
        boxes = await _add_embeddings(backend, data, boxes)
        embeddings_ms = round((time.perf_counter() - embed_started) * 1000, 2)

    timing = Timing(
        total=round((time.perf_counter() - started_at) * 1000, 2),
        model=round(model_ms, 2),
        embeddings=embeddings_ms,
    )
    response = PredictResponse(
        request_id=request_id, model=model, image=image, boxes=boxes, timing_ms=timing
    )
    return Prediction(response=response, image_bytes=data, info=info)
