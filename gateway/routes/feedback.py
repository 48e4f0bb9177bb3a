"""``POST /feedback``: corrected boxes for an image become training data and monitoring rows.

Only HTTP lives here: the key header, the ``labels`` field and the upload are parsed and checked,
then :meth:`gateway.feedback.FeedbackService.submit` does the rest (classes, prediction, rows
and key in one store transaction, replays, retrain) and its answer becomes the response.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Request, Response

from gateway.deps import FeedbackDep, RequestIdDep, SettingsDep, require_api_key
from gateway.errors import error_responses
from gateway.feedback import parse_labels
from gateway.idempotency import KEY_HEADER, MAX_KEY_LENGTH, check_key
from gateway.prediction import read_upload
from gateway.routes.predict import MODEL_VERSION_HEADER, UPLOAD_ENCODING, UploadDep
from yoloserve.schemas import FeedbackResponse

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
    service: FeedbackDep,
    request_id: RequestIdDep,
    idempotency_key: Annotated[
        str | None, Header(alias=KEY_HEADER, description=_KEY_DESCRIPTION,
                           json_schema_extra=KEY_SCHEMA)
    ] = None,
) -> FeedbackResponse:
    """One row per ground-truth box and per unmatched prediction is stored (and exported to
    ``prod_data.csv``).

    Matching is by IoU >= 0.5 against the default model's prediction on this image; the image and
    its YOLO label are kept for retraining. When the stored rows pass a multiple of
    ``RETRAIN_EVERY_K``, a retrain job starts (``retrain.triggered``); if one is already
    running, the rows wait for the next multiple (``triggered`` false, ``job_id`` null). A
    request repeated with the same ``Idempotency-Key`` (or the same ``request_id``, image and
    labels) gets the first answer, with ``Idempotent-Replayed: true``, and stores nothing.

    With ``review_id`` in ``labels`` the feedback answers that review-queue item (``GET
    /review``) and closes it as labelled: 404 ``unknown_review_item`` or 409
    ``review_item_closed`` (checked before anything is stored) when it is not open; a retry of
    an answered review feedback gets its first answer, not the 409.
    """
    key = check_key(idempotency_key)
    parsed = parse_labels(labels)
    data, info = await read_upload(file, settings)
    answer = await service.submit(
        data, info, parsed, key=key, request_id=request_id,
        started_at=float(getattr(request.state, "started_at", time.perf_counter())),
    )
    response.headers[MODEL_VERSION_HEADER] = answer.model_version
    if answer.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return answer.body
