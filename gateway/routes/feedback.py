"""``POST /feedback``: corrected boxes for an image become training data and monitoring rows.

The gateway runs the prediction itself, on the same image, through the default model with the
default thresholds: the stored rows then pair the ground truth with what serves now, whatever the
client saw earlier. Every check that needs no model time (labels, class names, the upload, the
embedder) comes first, and nothing is stored unless everything is valid.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from gateway.deps import (
    EmbedderDep,
    FeedbackDep,
    MetricsDep,
    RequestIdDep,
    RetrainDep,
    ReviewDep,
    SettingsDep,
    TorchServeDep,
    require_api_key,
)
from gateway.errors import error_responses
from gateway.feedback import check_classes, parse_labels
from gateway.prediction import PredictParams, predict_upload
from gateway.review.service import close_reviewed
from gateway.routes.predict import MODEL_VERSION_HEADER
from yoloserve.schemas import FeedbackResponse

router = APIRouter(tags=["feedback"])

_LABELS_DESCRIPTION = (
    'JSON: {"request_id": "<optional id of the prediction>", "boxes": [{"xyxy": [x1, y1, x2, y2],'
    ' "name": "<class from GET /models>"}], "review_id": "<optional GET /review item it closes>"};'
    " an empty boxes list means nothing to detect"
)
_DEFAULTS = PredictParams(conf=None, iou=None, max_det=None, version=None)


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackResponse,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 502, 503, 504),
    dependencies=[Depends(require_api_key)],
    summary="Send corrected boxes for an image (training data and monitoring rows)",
)
async def feedback(
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP or BMP")],
    labels: Annotated[str, Form(description=_LABELS_DESCRIPTION)],
    settings: SettingsDep,
    torchserve: TorchServeDep,
    embedder: EmbedderDep,
    service: FeedbackDep,
    retrain: RetrainDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    review: ReviewDep,
) -> FeedbackResponse:
    """One row per ground-truth box and per unmatched prediction goes to ``prod_data.csv``.

    Matching is by IoU >= 0.5 against the default model's prediction on this image; the image and
    its YOLO label are kept for retraining. When the CSV passes a multiple of ``RETRAIN_EVERY_K``
    rows, a retrain job starts (``retrain.triggered``); if one is already running, the rows wait
    for the next multiple (``triggered`` false, ``job_id`` null).

    With ``review_id`` in ``labels`` the feedback answers that review-queue item (``GET
    /review``) and closes it as labelled: 404 ``unknown_review_item`` or 409
    ``review_item_closed`` (checked before anything is stored) when it is not open.
    """
    parsed = parse_labels(labels)
    classes = await run_in_threadpool(service.classes)
    check_classes(parsed, classes)
    if parsed.review_id is not None:  # 404/409 for a bad review item, before any model time
        await review.check_open(parsed.review_id)
    # Fails (503) before model time is spent when rows could not be embedded anyway.
    backend = await embedder.get()
    prediction = await predict_upload(
        file,
        _DEFAULTS,
        settings=settings,
        torchserve=torchserve,
        embedder=None,
        request_id=request_id,
        started_at=float(getattr(request.state, "started_at", time.perf_counter())),
        metrics=metrics,
    )
    served = prediction.response
    recorder = service.recorder_for(backend)
    result = await run_in_threadpool(
        recorder.record,
        prediction.image_bytes,
        [(box.xyxy, box.name) for box in parsed.boxes],
        [(box.xyxy, box.name, box.conf) for box in served.boxes],
        served.model.version,
        # The client's id links to what it was shown; without one, to this request's prediction.
        parsed.request_id if parsed.request_id is not None else request_id,
        classes,
    )
    metrics.feedback_requests.inc()
    metrics.feedback_rows.inc(result.rows_written)
    if parsed.review_id is not None:
        await close_reviewed(review, parsed.review_id)
    retrain_info = await retrain.after_feedback(
        result.prod_rows_total - result.rows_written, result.prod_rows_total
    )
    response.headers[MODEL_VERSION_HEADER] = served.model.version
    return FeedbackResponse(
        feedback_id=result.feedback_id,
        rows_written=result.rows_written,
        prod_rows_total=result.prod_rows_total,
        retrain=retrain_info,
    )
