"""The Label Studio ML backend protocol under ``/labelstudio``: connect a project with the ML
backend URL ``http://<gateway>/labelstudio`` (docs/labelstudio.md).

Only HTTP lives here; :class:`gateway.labelstudio.service.LabelStudioService` does the work. The
paths are the ones Label Studio calls on an ML backend (``GET /health``, ``POST /setup``,
``POST /predict``, ``POST /webhook``), answered in the shapes of label-studio-ml-backend's
reference server. Errors keep the gateway's JSON shape; Label Studio shows their message.

Auth: ``health``, ``setup``, ``predict`` and ``config`` only read (as ``POST /predict``): open,
whatever credentials Label Studio sends. ``webhook`` records feedback (as ``POST /feedback``): it
takes a key when the gateway has keys, as ``X-API-Key`` (a webhook's headers) or as the
password of HTTP basic auth (an ML backend connection's basic auth).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gateway.deps import FeedbackDep, LabelStudioDep, RequestIdDep, require_api_key_or_basic
from gateway.errors import error_responses
from gateway.labelstudio.protocol import PredictRequest, SetupRequest, WebhookEvent
from gateway.routes.feedback import REPLAYED_HEADER
from gateway.routes.predict import MODEL_VERSION_HEADER
from yoloserve.labelstudio import labeling_config
from yoloserve.schemas import FeedbackResponse

router = APIRouter(prefix="/labelstudio", tags=["labelstudio"])

_FETCH_ERRORS = (400, 413, 415, 422, 502, 503, 504)


class BackendHealth(BaseModel):
    """What Label Studio's health check reads."""

    status: str = "UP"
    model_class: str = "yoloserve"


class SetupAnswer(BaseModel):
    """The version Label Studio stores as the backend's model version."""

    model_version: str | None


class PredictAnswer(BaseModel):
    """One prediction per task, in the order of the tasks."""

    results: list[dict[str, Any]]


class WebhookAnswer(BaseModel):
    """``recorded`` (a new feedback), ``replayed`` (this annotation version was recorded
    before: nothing new) or ``ignored`` (not an annotation event, or a skipped task)."""

    status: str
    feedback: FeedbackResponse | None = None
    detail: str | None = None


def _started_at(request: Request) -> float:
    return float(getattr(request.state, "started_at", time.perf_counter()))


@router.get("/health", response_model=BackendHealth, summary="ML backend health")
@router.get("/", response_model=BackendHealth, include_in_schema=False)
async def health() -> BackendHealth:
    """``{"status": "UP"}`` while the gateway runs (``GET /ready`` says whether it can predict)."""
    return BackendHealth()


@router.post("/setup", response_model=SetupAnswer, responses=error_responses(400, 422, 503),
             summary="Check a project's labeling config; the serving version")
async def setup(body: SetupRequest, service: LabelStudioDep) -> SetupAnswer:
    """400 ``unknown_class`` when the config labels a class the model does not have, 400
    ``invalid_task`` when it has no ``RectangleLabels`` on an ``Image``."""
    return SetupAnswer.model_validate(await service.setup(body))


@router.post("/predict", response_model=PredictAnswer, responses=error_responses(*_FETCH_ERRORS),
             summary="Pre-label tasks with the serving model")
async def predict(request: Request, body: PredictRequest, service: LabelStudioDep,
                  request_id: RequestIdDep) -> PredictAnswer:
    """``rectanglelabels`` in percent of each image, scored, with the serving version."""
    answer = await service.predict(body, request_id=request_id, started_at=_started_at(request))
    return PredictAnswer.model_validate(answer)


@router.post(
    "/webhook",
    response_model=WebhookAnswer,
    responses=error_responses(401, 403, 409, *_FETCH_ERRORS),
    dependencies=[Depends(require_api_key_or_basic)],
    summary="Annotation events become feedback (as POST /feedback)",
)
async def webhook(request: Request, response: Response, body: WebhookEvent,
                  service: LabelStudioDep, request_id: RequestIdDep) -> WebhookAnswer:
    """``ANNOTATION_CREATED``/``ANNOTATION_UPDATED``: the annotation's boxes are stored as
    feedback on the task's image, once per annotation version (``updated_at``)."""
    answer = await service.webhook(body, request_id=request_id, started_at=_started_at(request))
    if answer.model_version is not None:
        response.headers[MODEL_VERSION_HEADER] = answer.model_version
    if answer.status == "replayed":
        response.headers[REPLAYED_HEADER] = "true"
    return WebhookAnswer(status=answer.status, feedback=answer.feedback, detail=answer.detail)


# The base Response class: its errors are then documented as the JSON they are (PlainTextResponse
# would document them as text/plain).
@router.get("/config", response_class=Response, responses={
    200: {"content": {"application/xml": {}}}, **error_responses(400, 503)},
    summary="A labeling config for the model's classes")
async def config(
    feedback: FeedbackDep,
    from_name: Annotated[str, Query(pattern=r"^[A-Za-z_][\w-]{0,63}$")] = "label",
    to_name: Annotated[str, Query(pattern=r"^[A-Za-z_][\w-]{0,63}$")] = "image",
) -> PlainTextResponse:
    """Paste it into the project's Labeling Interface (Code): one ``Label`` per class."""
    classes = await run_in_threadpool(feedback.classes)
    xml = labeling_config(classes, from_name=from_name, to_name=to_name)
    return PlainTextResponse(xml, media_type="application/xml")
