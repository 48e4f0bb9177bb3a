"""The gateway's side of ``POST /feedback``: :class:`FeedbackService` takes a parsed request
and returns the answer; the route (``gateway.routes.feedback``) only parses HTTP.

Recording itself is ``yoloserve.feedback.recorder.FeedbackRecorder`` (match by IoU, embed with the
shared embedder, commit the rows and the idempotency key in one store transaction, keep the image
and its YOLO label for retraining). The service adds what needs the gateway: the class names from
the registry (as ``GET /models`` shows them), the prediction the rows pair with (the prediction
cache, or TorchServe), the review item it closes, the retrain trigger, replays of named feedback
(``gateway.idempotency``) and the ``prod_data.csv`` export after each commit.

Example:
    >>> parse_labels('{"boxes": [{"xyxy": [1, 2, 30, 40], "name": "square"}]}').boxes[0].name
    'square'
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend
from gateway.idempotency import KeyLocks, check_reuse, claim_for, dedupe_scope, fingerprint
from gateway.metrics import GatewayMetrics
from gateway.prediction import PredictParams, predict_data
from gateway.prediction_cache import PredictionCache, image_digest
from gateway.retrain_trigger import RetrainTrigger
from gateway.review.service import ReviewService, close_reviewed
from yoloserve.embeddings.embedder import Embedder
from yoloserve.errors import InvalidLabels, ModelNotReady, RegistryError, UnknownClass
from yoloserve.feedback.export import BackgroundExporter
from yoloserve.feedback.ledger import FeedbackLedger, KeyClaim, Settle, StoredAnswer
from yoloserve.feedback.recorder import FeedbackRecorder
from yoloserve.images import ImageInfo
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import Registry
from yoloserve.schemas import FeedbackLabels, FeedbackResponse, PredictResponse

_DEFAULTS = PredictParams(conf=None, iou=None, max_det=None, version=None)
MAX_BOXES = 1000  # the handler's max_det ceiling: more ground truth than that is not a photo


def parse_labels(raw: str) -> FeedbackLabels:
    """Parse the ``labels`` form field.

    Raises:
        RequestValidationError: Not JSON, or not the contract's shape (the gateway answers 422
            ``validation_error``, as for any body that breaks the schema).
        InvalidLabels: More than ``MAX_BOXES`` boxes.
    """
    try:
        labels = FeedbackLabels.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"loc": ("body", "labels", *error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from exc
    if len(labels.boxes) > MAX_BOXES:
        raise InvalidLabels(f"at most {MAX_BOXES} boxes per image, got {len(labels.boxes)}")
    return labels


def check_classes(labels: FeedbackLabels, classes: list[str]) -> None:
    """Refuse a box whose class the model does not have (before any model time is spent).

    Raises:
        UnknownClass: The first box with an unknown name.
    """
    for index, box in enumerate(labels.boxes):
        if box.name not in classes:
            raise UnknownClass(
                f"boxes[{index}]: unknown class {box.name!r}; known classes: {classes}"
            )


@dataclass(frozen=True)
class FeedbackAnswer:
    """What ``POST /feedback`` answers: the body, ``X-Model-Version``, and whether it is a replay
    of a feedback stored before (``Idempotent-Replayed``)."""

    body: FeedbackResponse
    model_version: str
    replayed: bool = False


class FeedbackService:
    """Records feedback: one :meth:`submit` per ``POST /feedback``, no HTTP in it.

    Args:
        settings: The gateway's settings (data folder, thresholds of the prediction call).
        registry: Source of the class names and the default version.
        ledger: Where rows and keys are committed.
        exports: Exports ``prod_data.csv`` after each commit; None: nobody does here.
        torchserve: Predicts when the prediction cache has no answer for the image.
        embedder: The embedder the rows are embedded with.
        metrics: Counts feedback requests and rows.
        cache: Recent predictions of the default version.
        review: The review queue (a feedback may close an item).
        retrain: Starts a retrain when the row total passes a multiple of k.
        answer_wait_s: How long a replay waits for the answer of a key another process
            committed moments ago before answering it itself.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        ledger: FeedbackLedger,
        exports: BackgroundExporter | None,
        *,
        torchserve: TorchServeClient,
        embedder: EmbedderProvider,
        metrics: GatewayMetrics,
        cache: PredictionCache,
        review: ReviewService,
        retrain: RetrainTrigger,
        answer_wait_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.registry, self.ledger, self.exports = registry, ledger, exports
        self.torchserve, self.embedder, self.metrics = torchserve, embedder, metrics
        self.cache, self.review, self.retrain = cache, review, retrain
        self.answer_wait_s = answer_wait_s
        self.locks = KeyLocks()
        self._recorder: FeedbackRecorder | None = None
        self._backend: EmbeddingBackend | None = None

    async def submit(
        self,
        data: bytes,
        info: ImageInfo,
        labels: FeedbackLabels,
        *,
        key: str | None,
        request_id: str,
        started_at: float,
    ) -> FeedbackAnswer:
        """Store one feedback (or replay the stored answer of a named one) and answer it.

        Args:
            data: The uploaded image, already read and checked (``read_upload``).
            info: Its size and format.
            labels: The parsed ``labels`` (``parse_labels``).
            key: The checked ``Idempotency-Key`` (``check_key``), or None.
            request_id: This request's id (rows carry it when ``labels`` has none).
            started_at: ``time.perf_counter()`` when the request arrived (prediction timing).

        Raises:
            ModelNotReady, RegistryError, UnknownClass: before model time is spent.
            EmbeddingsUnavailable: no embedder (before model time is spent).
            IdempotencyKeyReused: ``key`` was stored with another image or other labels.
            UnknownReviewItem, ReviewItemClosed: ``labels.review_id`` is not open.
            InvalidLabels, CsvSchemaError, model-server errors: nothing is stored.
        """
        digest = image_digest(data)
        print_ = fingerprint(digest, labels)
        scope = dedupe_scope(key, labels.request_id, print_)
        claim = claim_for(scope, print_) if scope is not None else None
        strict = key is not None
        held = self.locks.hold(claim.key_hash) if claim is not None else contextlib.nullcontext()
        async with held:
            # One trip to a worker thread for both reads: each trip costs the event loop.
            (classes, default_version), found = await run_in_threadpool(self._lookup, claim)
            check_classes(labels, classes)
            # Fails (503) before model time is spent when rows could not be embedded anyway.
            backend = await self.embedder.get()
            if claim is not None and found is not None:
                check_reuse(found, print_, strict=strict)
                return await self._replay(found, claim, labels)
            call = _Call(data, info, labels, classes, default_version, digest, backend,
                         request_id, started_at)
            return await self._store(call, claim, strict=strict)

    def _lookup(self, claim: KeyClaim | None) -> tuple[tuple[list[str], str | None],
                                                        StoredAnswer | None]:
        """The model facts, and what is stored under ``claim`` (blocking: reads the store)."""
        facts = self.model_facts()
        return facts, (self.ledger.find(claim.key_hash) if claim is not None else None)

    async def _store(self, call: _Call, claim: KeyClaim | None, *, strict: bool) -> FeedbackAnswer:
        labels = call.labels
        if labels.review_id is not None:  # 404/409 for a bad review item, before any model time
            await self.review.check_open(labels.review_id)
        served = (self.cache.get(call.digest, call.default_version)
                  if call.default_version is not None else None)
        if served is None:
            served = (await predict_data(
                call.data, call.info, _DEFAULTS, settings=self.settings,
                torchserve=self.torchserve, embedder=None, request_id=call.request_id,
                started_at=call.started_at, metrics=self.metrics,
            )).response
        result = await run_in_threadpool(
            self.recorder_for(call.backend).record,
            call.data,
            [(box.xyxy, box.name) for box in labels.boxes],
            [(box.xyxy, box.name, box.conf) for box in served.boxes],
            served.model.version,
            # The client's id links to what it was shown; without one, to this request's id.
            labels.request_id if labels.request_id is not None else call.request_id,
            call.classes,
            known_embeddings=_embeddings_of(served),
            claim=claim,
            settle=self._settle(claim, labels),
        )
        if claim is not None and result.existing is not None:
            # Another process stored this key between our look-up and our commit.
            check_reuse(result.existing, claim.fingerprint or "", strict=strict)
            return await self._replay(result.existing, claim, labels)
        if self.exports is not None:
            self.exports.request()
        self.metrics.feedback_requests.inc()
        self.metrics.feedback_rows.inc(result.rows_written)
        if result.body is not None:  # answered in the commit: nothing left to do
            return FeedbackAnswer(FeedbackResponse.model_validate(result.body),
                                  served.model.version)
        answer = await self._answer(claim, labels, result.feedback_id, result.rows_written,
                                    result.prod_rows_total)
        return FeedbackAnswer(answer, served.model.version)

    def _settle(self, claim: KeyClaim | None, labels: FeedbackLabels) -> Settle | None:
        """The answer of a named feedback that has nothing left to do after its commit (no
        review item to close, no retrain to start), for the commit to store with its key:
        one write transaction per feedback instead of two. None: the answer waits."""
        if claim is None or labels.review_id is not None:
            return None
        quiet, feedback_id = self.retrain.quiet, claim.feedback_id

        def settle(rows_written: int, total: int) -> dict[str, Any] | None:
            info = quiet(total - rows_written, total)
            if info is None:
                return None
            return FeedbackResponse(feedback_id=feedback_id, rows_written=rows_written,
                                    prod_rows_total=total, retrain=info).model_dump(mode="json")

        return settle

    async def _replay(self, found: StoredAnswer, claim: KeyClaim,
                      labels: FeedbackLabels) -> FeedbackAnswer:
        if found.body is None:
            waited: StoredAnswer | None = await run_in_threadpool(
                self.ledger.wait_answered, claim.key_hash, self.answer_wait_s)
            found = waited or found
        if found.body is not None:
            return FeedbackAnswer(FeedbackResponse.model_validate(found.body),
                                  found.model_version, replayed=True)
        # Stored by an attempt that was never answered (the gateway died after the commit):
        # answer it now, close its review item and start the retrain it would have started.
        answer = await self._answer(claim, labels, found.feedback_id, found.rows_written,
                                    found.prod_rows_total)
        return FeedbackAnswer(answer, found.model_version, replayed=True)

    async def _answer(self, claim: KeyClaim | None, labels: FeedbackLabels, feedback_id: str,
                      rows_written: int, total: int) -> FeedbackResponse:
        """Close the review item, decide the retrain, and store the answer of a named one."""
        if labels.review_id is not None:
            await close_reviewed(self.review, labels.review_id)
        retrain_info = await self.retrain.after_feedback(total - rows_written, total)
        answer = FeedbackResponse(feedback_id=feedback_id, rows_written=rows_written,
                                  prod_rows_total=total, retrain=retrain_info)
        if claim is None:
            return answer
        stored = await run_in_threadpool(self.ledger.answer, claim.key_hash,
                                         answer.model_dump(mode="json"))
        return FeedbackResponse.model_validate(stored)

    def classes(self) -> list[str]:
        """The model's class names, from the registry (blocking: reads the store).

        Raises:
            ModelNotReady: No model is registered yet, so no class names are known.
            RegistryError: The registry cannot be read.
        """
        return self.model_facts()[0]

    def model_facts(self) -> tuple[list[str], str | None]:
        """The class names and the default version, from one read of the registry's head.

        Raises:
            ModelNotReady: No model is registered yet, so no class names are known.
            RegistryError: The registry cannot be read.
        """
        try:
            data = self.registry.head()
        except (OSError, ValueError, SQLAlchemyError) as exc:
            raise RegistryError(f"the registry cannot be read: {exc}") from exc
        if not data.classes:
            raise ModelNotReady("no model is registered yet, so there are no class names")
        return list(data.classes), data.default_version

    def recorder_for(self, backend: EmbeddingBackend) -> FeedbackRecorder:
        """The recorder writing rows of ``backend``'s embedder (built once per backend).

        Called on the event loop only, so building it needs no lock.
        """
        if self._recorder is None or self._backend is not backend:
            # The recorder uses only dim, version and embed(): what SupportsEmbed promises.
            embedder = cast(Embedder, backend.embedder)
            export_path = self.exports.exporter.path if self.exports is not None else None
            self._recorder = FeedbackRecorder(self.data_dir, embedder, self.ledger,
                                              export_path=export_path)
            self._backend = backend
        return self._recorder


@dataclass(frozen=True)
class _Call:
    """One submit's checked inputs, passed between its steps."""

    data: bytes
    info: ImageInfo
    labels: FeedbackLabels
    classes: list[str]
    default_version: str | None
    digest: str
    backend: EmbeddingBackend
    request_id: str
    started_at: float


def _embeddings_of(served: PredictResponse) -> dict[tuple[float, ...], list[float]]:
    """Per-box vectors the prediction already carries (``/predict?embeddings=true``)."""
    return {tuple(box.xyxy): box.embedding for box in served.boxes if box.embedding is not None}
