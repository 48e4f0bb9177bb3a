"""The Label Studio ML backend's work, no HTTP in it: setup, predict and the webhook.

- **setup**: checks the project's labeling config against the model's classes and answers the
  serving version (Label Studio stores it and asks again for tasks without a prediction of it).
- **predict**: fetches each task's image (``gateway.labelstudio.images``), runs the same
  prediction as ``POST /predict`` (default version and thresholds; the prediction cache, so a
  feedback on the same image later reuses it) and answers ``rectanglelabels`` in percent of the
  image, ``from_name``/``to_name`` from the config. Boxes of a class the config does not list are
  left out: the project chose not to label it.
- **webhook**: an ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` event becomes one feedback through
  :meth:`gateway.feedback.FeedbackService.submit`, the code path of ``POST /feedback`` (rows in
  the store, ``prod_data.csv``, the retrain trigger), named by the ``Idempotency-Key``
  ``labelstudio/<project>/<annotation>/<updated_at>``: Label Studio's retry of one event stores
  nothing new, an update (a new ``updated_at``) is a new correction. Other events are ignored.

Example::

    service = LabelStudioService(settings, fetcher, feedback, torchserve=ts, metrics=m, cache=c)
    answer = await service.predict(PredictRequest(...), request_id="r1", started_at=t0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings
from gateway.feedback import FeedbackService
from gateway.idempotency import check_key
from gateway.labelstudio.images import TaskImageFetcher
from gateway.labelstudio.protocol import PredictRequest, SetupRequest, Task, WebhookEvent
from gateway.metrics import GatewayMetrics
from gateway.prediction import PredictParams, predict_upload
from gateway.prediction_cache import PredictionCache
from yoloserve.errors import InvalidTask, UnknownClass
from yoloserve.images import open_image
from yoloserve.labelstudio import (
    RECTANGLE,
    LabelConfigError,
    RectangleTarget,
    from_rectangle,
    parse_config,
    to_rectangle,
)
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.schemas import FeedbackLabels, FeedbackResponse, LabelBox

FEEDBACK_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})
_DEFAULTS = PredictParams(conf=None, iou=None, max_det=None, version=None)
_TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook answers: ``recorded``, ``replayed`` or ``ignored``, and the feedback."""

    status: str
    feedback: FeedbackResponse | None = None
    model_version: str | None = None
    detail: str | None = None


def target_of(label_config: str) -> RectangleTarget:
    """The config's box control, or a 400 that says what is wrong with the config."""
    try:
        return parse_config(label_config)
    except LabelConfigError as exc:
        raise InvalidTask(str(exc)) from exc


def image_url(task: Task, key: str) -> str:
    """The task's image URL under the config's field ``key``."""
    url = task.data.get(key)
    if not isinstance(url, str) or not url:
        raise InvalidTask(f"task {task.id}: no image URL under data[{key!r}] (the labeling "
                          f"config's <Image value=\"${key}\">)")
    return url


class LabelStudioService:
    """The ML backend over the gateway's prediction and feedback code.

    Args:
        settings: The gateway's settings.
        fetcher: Fetches task images.
        feedback: Records annotations as feedback (the ``POST /feedback`` service).
        torchserve, metrics, cache: As ``POST /predict`` uses them.
    """

    def __init__(self, settings: Settings, fetcher: TaskImageFetcher, feedback: FeedbackService,
                 *, torchserve: TorchServeClient, metrics: GatewayMetrics,
                 cache: PredictionCache) -> None:
        self.settings, self.fetcher, self.feedback = settings, fetcher, feedback
        self.torchserve, self.metrics, self.cache = torchserve, metrics, cache

    async def setup(self, request: SetupRequest) -> dict[str, Any]:
        """``{"model_version": <serving version>}`` once the config's labels are model classes.

        Raises:
            InvalidTask: The config has no boxes on an image.
            UnknownClass: A label the model does not know (Label Studio then shows the backend
                as failed with this message, instead of pre-labelling a class nobody serves).
            ModelNotReady, RegistryError: No model registered, or the registry cannot be read.
        """
        target = target_of(request.schema_)
        classes, default_version = await run_in_threadpool(self.feedback.model_facts)
        unknown = [label for label in target.labels if label not in classes]
        if unknown:
            raise UnknownClass(f"labels {unknown} of <RectangleLabels name="
                               f"{target.from_name!r}> are not classes of the model: {classes}")
        return {"model_version": default_version}

    async def predict(self, request: PredictRequest, *, request_id: str,
                      started_at: float) -> dict[str, Any]:
        """``{"results": [one prediction per task, in order]}``; the first task that fails
        fails the call (Label Studio then asks again task by task).

        Raises:
            InvalidTask: More than ``LABELSTUDIO_MAX_TASKS`` tasks, a config without boxes, a
                task without an image URL or with one it may not fetch.
            TaskImageUnavailable, ImageTooLarge, InvalidImage, model-server errors.
        """
        limit = self.settings.labelstudio.max_tasks
        if len(request.tasks) > limit:
            raise InvalidTask(f"{len(request.tasks)} tasks in one call; at most {limit} "
                              "(LABELSTUDIO_MAX_TASKS)")
        target = target_of(request.label_config)
        results = []
        for task in request.tasks:
            data, info = await self.fetcher.fetch(image_url(task, target.value_key))
            prediction = await predict_upload(
                data, info, _DEFAULTS, settings=self.settings, torchserve=self.torchserve,
                embedder=None, request_id=request_id, started_at=started_at,
                metrics=self.metrics, cache=self.cache,
            )
            response = prediction.response
            self.metrics.predictions.labels(model_version=response.model.version).inc()
            width, height = response.image.width, response.image.height
            regions: list[dict[str, Any]] = [
                {
                    "id": f"{task.id}-{index}",
                    "from_name": target.from_name,
                    "to_name": target.to_name,
                    "type": RECTANGLE,
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {**to_rectangle(box.xyxy, width, height),
                              RECTANGLE: [box.name]},
                    "score": box.conf,
                }
                for index, box in enumerate(response.boxes)
                if box.name in target.labels
            ]
            score = sum(r["score"] for r in regions) / len(regions) if regions else 0.0
            results.append({"result": regions, "score": score,
                            "model_version": response.model.version})
        return {"results": results}

    async def webhook(self, event: WebhookEvent, *, request_id: str,
                      started_at: float) -> WebhookAnswer:
        """Record an annotation event as feedback (other events: ``ignored``).

        Raises:
            InvalidTask: The event lacks its annotation, task or image, or a box is not one.
            UnknownClass: A box's label is not a class of the model.
            IdempotencyKeyReused: The same annotation version with another image or boxes.
            TaskImageUnavailable, model-server errors, what ``POST /feedback`` raises.
        """
        if event.action not in FEEDBACK_EVENTS:
            return WebhookAnswer("ignored", detail=f"{event.action} is not an annotation event")
        annotation, task, project = event.annotation, event.task, event.project
        if annotation is None or task is None:
            raise InvalidTask(f"{event.action} without its annotation and task")
        if annotation.was_cancelled:
            return WebhookAnswer("ignored", detail="a skipped task carries no labels")
        config = project.label_config if project is not None else None
        value_key = target_of(config).value_key if config else _only_field(task)
        data, info = await self.fetcher.fetch(image_url(task, value_key))
        width, height = await run_in_threadpool(_upright_size, data, info.width, info.height)
        labels = _labels_of(annotation.result, width, height)
        project_id = project.id if project is not None else "-"
        idem = check_key(f"labelstudio/{project_id}/{annotation.id}/"
                         f"{annotation.updated_at or '-'}"[:128])
        answer = await self.feedback.submit(data, info, labels, key=idem,
                                            request_id=request_id, started_at=started_at)
        return WebhookAnswer("replayed" if answer.replayed else "recorded", answer.body,
                             answer.model_version)


def _only_field(task: Task) -> str:
    """Without a labeling config: the task's one data field holding a string."""
    fields = [name for name, value in task.data.items() if isinstance(value, str)]
    if len(fields) != 1:
        raise InvalidTask("the event has no project.label_config to say which task field holds "
                          f"the image, and the task has {len(fields)} text fields")
    return fields[0]


def _labels_of(result: list[dict[str, Any]], width: int, height: int) -> FeedbackLabels:
    """The annotation's rectangles as feedback labels (other result types are not boxes)."""
    boxes = []
    for index, region in enumerate(result):
        if region.get("type") != RECTANGLE:
            continue
        value = region.get("value") or {}
        names = value.get(RECTANGLE) if isinstance(value, dict) else None
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            raise InvalidTask(f"result[{index}]: a box needs exactly one label, got {names!r}")
        w = int(region.get("original_width") or width)
        h = int(region.get("original_height") or height)
        try:
            xyxy = from_rectangle(value, w, h)
            boxes.append(LabelBox(xyxy=list(xyxy), name=names[0]))
        except (ValueError, ValidationError) as exc:
            raise InvalidTask(f"result[{index}]: not a box: {exc}") from exc
    return FeedbackLabels(boxes=boxes)


def _upright_size(data: bytes, width: int, height: int) -> tuple[int, int]:
    """The size Label Studio's percentages refer to: the image as a browser shows it (EXIF
    orientation applied), as the gateway's boxes are."""
    with open_image(data) as image:
        turned = image.getexif().get(0x0112) in _TURNED
    return (height, width) if turned else (width, height)
