"""``POST /predict`` (JSON boxes) and ``POST /predict/image`` (the image with boxes drawn)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Query,
    Request,
    Response,
    UploadFile,
)
from starlette.concurrency import run_in_threadpool

from gateway.deps import (
    EmbedderDep,
    MetricsDep,
    PredictionCacheDep,
    RequestIdDep,
    ReviewDep,
    SettingsDep,
    TorchServeDep,
)
from gateway.errors import error_responses
from gateway.images import draw_boxes
from gateway.prediction import PredictParams, predict_params, predict_upload, read_image
from yoloserve.images import decode_rgb
from yoloserve.schemas import PredictResponse

router = APIRouter(tags=["predict"])

MODEL_VERSION_HEADER = "X-Model-Version"
_ERRORS = error_responses(400, 404, 413, 415, 422, 502, 503, 504)  # 404: ?version= unknown
_HEADERS = {
    "X-Request-ID": {"description": "Id of this request", "schema": {"type": "string"}},
    MODEL_VERSION_HEADER: {
        "description": "Model version that answered",
        "schema": {"type": "string"},
    },
}

# The schema says what the gateway requires, so a client generated from it never sends what is
# then refused: a non-empty file part (an empty one is a 415) of an image type it decodes.
UploadDep = Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP or BMP",
                                       json_schema_extra={"minLength": 1})]
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/bmp"
UPLOAD_ENCODING = {"requestBody": {"content": {"multipart/form-data": {
    "encoding": {"file": {"contentType": IMAGE_TYPES}}}}}}
# /predict and /predict/image take the image as the multipart part `file` or as the whole body
# (Content-Type: image/*): the routes declare no body parameter and read_image reads either, so
# the request body is stated here, whole.
_RAW_BODY = {"schema": {"type": "string", "format": "binary", "minLength": 1}}
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary", "minLength": 1,
                                    "description": "The image: JPEG, PNG, WebP or BMP"}},
            "required": ["file"],
        },
        "encoding": {"file": {"contentType": IMAGE_TYPES}},
    },
    **{kind: _RAW_BODY for kind in ("image/jpeg", "image/png", "image/webp", "image/bmp")},
}}}
ParamsDep = Annotated[PredictParams, Depends(predict_params)]


def _started_at(request: Request) -> float:
    return float(getattr(request.state, "started_at", time.perf_counter()))


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={200: {"headers": _HEADERS}, **_ERRORS},
    summary="Detect objects in an image",
    openapi_extra=IMAGE_BODY,
)
async def predict(
    request: Request,
    response: Response,
    params: ParamsDep,
    settings: SettingsDep,
    torchserve: TorchServeDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    cache: PredictionCacheDep,
    review: ReviewDep,
    background: BackgroundTasks,
    embeddings: Annotated[
        bool, Query(description="Add a per-box `embedding` (503 embeddings_unavailable if none)")
    ] = False,
) -> PredictResponse:
    """Boxes in the original image's pixels, sorted by confidence, highest first."""
    data, info = await read_image(request, settings)
    result = await predict_upload(
        data,
        info,
        params,
        settings=settings,
        torchserve=torchserve,
        embedder=embedder if embeddings else None,
        request_id=request_id,
        started_at=_started_at(request),
        metrics=metrics,
        cache=cache,
    )
    version = result.response.model.version
    metrics.predictions.labels(model_version=version).inc()
    response.headers[MODEL_VERSION_HEADER] = version
    # After the answer is sent: sampling for the review queue adds nothing to the latency.
    background.add_task(review.offer, result, embedder)
    return result.response


@router.post(
    "/predict/image",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}, "image/jpeg": {}},
            "description": "The image with boxes, class names and confidences drawn",
            "headers": _HEADERS,
        },
        **_ERRORS,
    },
    summary="Detect objects and draw them on the image",
    openapi_extra=IMAGE_BODY,
)
async def predict_image(
    request: Request,
    params: ParamsDep,
    settings: SettingsDep,
    torchserve: TorchServeDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    cache: PredictionCacheDep,
    embedder: EmbedderDep,
    review: ReviewDep,
    image_format: Annotated[
        Literal["png", "jpeg"], Query(alias="format", description="Output encoding")
    ] = "png",
) -> Response:
    """The uploaded image, upright, with each box outlined and labelled ``name conf``."""
    data, info = await read_image(request, settings)
    result = await predict_upload(
        data,
        info,
        params,
        settings=settings,
        torchserve=torchserve,
        embedder=None,
        request_id=request_id,
        started_at=_started_at(request),
        metrics=metrics,
        cache=cache,
    )
    image = await run_in_threadpool(decode_rgb, result.image_bytes)
    content = await run_in_threadpool(draw_boxes, image, result.response.boxes, image_format)
    version = result.response.model.version
    metrics.predictions.labels(model_version=version).inc()
    # Sampled for the review queue once the answer is sent, as /predict.
    background = BackgroundTasks()
    background.add_task(review.offer, result, embedder)
    return Response(
        content,
        media_type=f"image/{image_format}",
        headers={MODEL_VERSION_HEADER: version},
        background=background,
    )
