"""``POST /feedback``: corrected boxes for an image become training data and monitoring rows.

The rows pair the ground truth with what the default model, at the default thresholds, predicts
for this image. That prediction was usually made moments ago by the ``/predict`` the user is
correcting: it comes from the prediction cache (:mod:`gateway.prediction_cache`), and the model
runs again only on a miss. Every check that needs no model time (labels, class names, the upload,
the embedder) comes first, and nothing is stored unless everything is valid.

Retries: with an ``Idempotency-Key`` (or the prediction's ``request_id``) a repeated request
gets the first answer and stores nothing (:mod:`gateway.idempotency`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.deps import (
    EmbedderDep,
    FeedbackDep,
    IdempotencyDep,
    MetricsDep,
    PredictionCacheDep,
    RequestIdDep,
    RetrainDep,
    ReviewDep,
    SettingsDep,
    TorchServeDep,
    require_api_key,
)
from gateway.errors import error_responses
from gateway.feedback import check_classes, parse_labels
from gateway.idempotency import (
    KEY_HEADER,
    MAX_KEY_LENGTH,
    Answer,
    check_key,
    dedupe_scope,
    feedback_id_for,
    fingerprint,
)
from gateway.prediction import PredictParams, predict_data, read_upload
from gateway.prediction_cache import image_digest
from gateway.review.service import close_reviewed
from gateway.routes.predict import MODEL_VERSION_HEADER, UPLOAD_ENCODING, UploadDep
from yoloserve.schemas import FeedbackResponse, PredictResponse

router = APIRouter(tags=["feedback"])

_LABELS_DESCRIPTION = (
    'JSON: {"request_id": "<optional id of the prediction>", "boxes": [{"xyxy": [x1, y1, x2, y2],'
    ' "name": "<class from GET /models>"}], "review_id": "<optional GET /review item it closes>"};'
    " an empty boxes list means nothing to detect"
)
# What check_key accepts, for the document (checked there: a bad key is 400, not FastAPI's 422).
KEY_SCHEMA = {"minLength": 1, "maxLength": MAX_KEY_LENGTH,
              "pattern": r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"}
# A named string format (OpenAPI allows any): the JSON document described above. Generators
# that know it (the contract test registers it with schemathesis) draw valid labels.
LABELS_FORMAT = "feedback-labels"
_DEFAULTS = PredictParams(conf=None, iou=None, max_det=None, version=None)
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_DESCRIPTION = (
    "Any client string (1-128 printable ASCII characters) naming this feedback: sending the "
    "same request again returns the first answer and stores nothing, also after a restart"
)


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackResponse,
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 502, 503, 504),
    dependencies=[Depends(require_api_key)],
    summary="Send corrected boxes for an image (training data and monitoring rows)",
    openapi_extra=UPLOAD_ENCODING,
)
async def feedback(
    request: Request,
    response: Response,
    file: UploadDep,
    labels: Annotated[str, Form(description=_LABELS_DESCRIPTION, min_length=1,
                                json_schema_extra={"format": LABELS_FORMAT})],
    settings: SettingsDep,
    torchserve: TorchServeDep,
    embedder: EmbedderDep,
    service: FeedbackDep,
    retrain: RetrainDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    review: ReviewDep,
    cache: PredictionCacheDep,
    idempotency: IdempotencyDep,
    idempotency_key: Annotated[
        str | None, Header(alias=KEY_HEADER, description=_KEY_DESCRIPTION,
                           json_schema_extra=KEY_SCHEMA)
    ] = None,
) -> FeedbackResponse:
    """One row per ground-truth box and per unmatched prediction goes to ``prod_data.csv``.

    Matching is by IoU >= 0.5 against the default model's prediction on this image; the image and
    its YOLO label are kept for retraining. When the CSV passes a multiple of ``RETRAIN_EVERY_K``
    rows, a retrain job starts (``retrain.triggered``); if one is already running, the rows wait
    for the next multiple (``triggered`` false, ``job_id`` null). A request repeated with the same
    ``Idempotency-Key`` (or the same ``request_id``, image and labels) gets the first answer,
    with ``Idempotent-Replayed: true``, and stores nothing.

    With ``review_id`` in ``labels`` the feedback answers that review-queue item (``GET
    /review``) and closes it as labelled: 404 ``unknown_review_item`` or 409
    ``review_item_closed`` (checked before anything is stored) when it is not open; a retry of
    an answered review feedback gets its first answer, not the 409.
    """
    key = check_key(idempotency_key)
    parsed = parse_labels(labels)
    classes, default_version = await run_in_threadpool(service.model_facts)
    check_classes(parsed, classes)
    # Fails (503) before model time is spent when rows could not be embedded anyway.
    backend = await embedder.get()
    data, info = await read_upload(file, settings)
    digest = image_digest(data)
    print_ = fingerprint(digest, parsed)
    rows_request_id = parsed.request_id if parsed.request_id is not None else request_id
    scope = dedupe_scope(key, parsed.request_id, print_)

    async def store(feedback_id: str | None) -> tuple[FeedbackResponse, str]:
        if parsed.review_id is not None:  # 404/409 for a bad review item, before any model time
            await review.check_open(parsed.review_id)
        served = cache.get(digest, default_version) if default_version is not None else None
        if served is None:
            started = float(getattr(request.state, "started_at", time.perf_counter()))
            served = (await predict_data(
                data, info, _DEFAULTS, settings=settings, torchserve=torchserve, embedder=None,
                request_id=request_id, started_at=started, metrics=metrics,
            )).response
        result = await run_in_threadpool(
            service.recorder_for(backend).record,
            data,
            [(box.xyxy, box.name) for box in parsed.boxes],
            [(box.xyxy, box.name, box.conf) for box in served.boxes],
            served.model.version,
            # The client's id links to what it was shown; without one, to this request's id.
            rows_request_id,
            classes,
            feedback_id=feedback_id,
            known_embeddings=_embeddings_of(served),
        )
        metrics.feedback_requests.inc()
        metrics.feedback_rows.inc(result.rows_written)
        if parsed.review_id is not None:
            await close_reviewed(review, parsed.review_id)
        retrain_info = await retrain.after_feedback(
            result.prod_rows_total - result.rows_written, result.prod_rows_total
        )
        return FeedbackResponse(
            feedback_id=result.feedback_id,
            rows_written=result.rows_written,
            prod_rows_total=result.prod_rows_total,
            retrain=retrain_info,
        ), served.model.version

    if scope is None:
        answer, version = await store(None)
        response.headers[MODEL_VERSION_HEADER] = version
        return answer

    feedback_id = feedback_id_for(scope)
    async with idempotency.hold(feedback_id):
        found = await idempotency.find(feedback_id, print_, strict=key is not None)
        if found is not None and found.body is not None:
            response.headers[MODEL_VERSION_HEADER] = found.model_version
            response.headers[REPLAYED_HEADER] = "true"
            return FeedbackResponse.model_validate(found.body)
        if found is not None:
            # Stored by an attempt that was never answered (the gateway died after the append):
            # answer it now, close its review item and start the retrain it would have started.
            if parsed.review_id is not None:
                await close_reviewed(review, parsed.review_id)
            retrain_info = await retrain.after_feedback(
                found.prod_rows_total - found.rows_written, found.prod_rows_total
            )
            answer = FeedbackResponse(
                feedback_id=feedback_id, rows_written=found.rows_written,
                prod_rows_total=found.prod_rows_total, retrain=retrain_info,
            )
            version = found.model_version
            response.headers[REPLAYED_HEADER] = "true"
        else:
            answer, version = await store(feedback_id)
        await idempotency.remember(Answer(
            feedback_id, print_, version, answer.model_dump(mode="json"),
            answer.rows_written, answer.prod_rows_total,
        ))
    response.headers[MODEL_VERSION_HEADER] = version
    return answer


def _embeddings_of(served: PredictResponse) -> dict[tuple[float, ...], list[float]]:
    """Per-box vectors the prediction already carries (``/predict?embeddings=true``)."""
    return {tuple(box.xyxy): box.embedding for box in served.boxes if box.embedding is not None}
