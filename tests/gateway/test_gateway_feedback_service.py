"""``FeedbackService.submit`` without HTTP: plain arguments in, the answer out. Two services on
one store are two gateway replicas: a retry on either gets the first answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend
from gateway.feedback import FeedbackAnswer, FeedbackService, parse_labels
from gateway.metrics import GatewayMetrics
from gateway.prediction_cache import PredictionCache
from gateway.retrain_trigger import RetrainTrigger
from gateway.review.service import ReviewService
from tests.gateway.fake_torchserve import FakeTorchServe, encode_image
from tests.gateway.test_gateway_feedback import GT_BOX, read_rows, seed_registry
from yoloserve.errors import IdempotencyKeyReused, UnknownClass
from yoloserve.feedback.export import BackgroundExporter, open_exporter
from yoloserve.feedback.ledger import FeedbackLedger, KeyClaim
from yoloserve.images import inspect_image
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import Store

SQUARE = json.dumps({"boxes": [{"xyxy": GT_BOX, "name": "square"}]})
Build = Callable[[], FeedbackService]


@pytest.fixture
async def build(
    settings: Settings, fake_ts: FakeTorchServe,
    fake_embedder_loader: Callable[[], EmbeddingBackend],
) -> AsyncIterator[Build]:
    """Builds services of one store, each with its own Store object (like a replica)."""
    seed_registry(settings.store.url)
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake_ts))
    exports: list[BackgroundExporter] = []

    def make() -> FeedbackService:
        store = Store(settings.store.url)
        registry, metrics = Registry(store), GatewayMetrics()
        exporter = BackgroundExporter(open_exporter(store, settings.data_dir))
        exports.append(exporter)
        return FeedbackService(
            settings, registry, FeedbackLedger(store), exporter,
            torchserve=TorchServeClient(http, settings.torchserve.inference_url,
                                        settings.torchserve.management_url,
                                        settings.torchserve.model_name),
            embedder=EmbedderProvider(fake_embedder_loader), metrics=metrics,
            cache=PredictionCache(16, 60.0),
            review=ReviewService(settings, metrics, registry.store),
            retrain=RetrainTrigger(RetrainSettings().every_k, registry, metrics),
            answer_wait_s=0.0,
        )

    yield make
    for exporter in exports:
        exporter.close()
    await http.aclose()


async def submit(service: FeedbackService, labels: str = SQUARE,
                 key: str | None = None, image: bytes | None = None) -> FeedbackAnswer:
    data = image if image is not None else encode_image("PNG")
    return await service.submit(data, inspect_image(data, 10**8), parse_labels(labels), key=key,
                                request_id="req-1", started_at=0.0)


async def test_submit_stores_rows_and_answers_with_the_store_total(
    build: Build, settings: Settings
) -> None:
    service = build()
    first = await submit(service)
    second = await submit(service)

    assert (first.body.rows_written, first.body.prod_rows_total) == (3, 3)
    assert second.body.prod_rows_total == 6 and first.model_version == "3"
    assert not first.replayed
    assert service.exports is not None and service.exports.flush()
    rows = read_rows(settings.data_dir)
    assert [r["feedback_id"] for r in rows] == [first.body.feedback_id] * 3 + [
        second.body.feedback_id] * 3


async def test_a_retry_on_another_replica_gets_the_first_answer(
    build: Build, settings: Settings, fake_ts: FakeTorchServe
) -> None:
    first = await submit(build(), key="k-1")
    again = await submit(build(), key="k-1")

    assert again.replayed and not first.replayed
    assert again.body.model_dump_json() == first.body.model_dump_json()
    assert again.model_version == first.model_version
    assert len(fake_ts.predict_requests) == 1, "a replay spends no model time"
    assert len(read_rows(settings.data_dir)) == 3
    with pytest.raises(IdempotencyKeyReused):
        await submit(build(), labels=json.dumps({"boxes": []}), key="k-1")


async def test_a_key_committed_but_never_answered_is_answered_once(
    build: Build, settings: Settings
) -> None:
    service = build()
    await submit(service)  # 3 rows before it
    # What a gateway killed between the commit and the answer leaves behind.
    ledger = service.ledger
    committed = ledger.commit([], KeyClaim("deadbeef", "idem-deadbeef", None), "3")
    assert committed.prod_rows_total == 3
    scope_answer = ledger.find("deadbeef")
    assert scope_answer is not None and scope_answer.body is None

    answered = await service._replay(scope_answer, KeyClaim("deadbeef", "idem-deadbeef", None),
                                     parse_labels(SQUARE))
    assert answered.replayed and answered.body.prod_rows_total == 3
    assert answered.body.rows_written == 0
    stored = ledger.find("deadbeef")
    assert stored is not None and stored.body == answered.body.model_dump(mode="json")


async def test_bad_input_stores_nothing(build: Build, settings: Settings) -> None:
    service = build()
    with pytest.raises(UnknownClass):
        await submit(service, labels=json.dumps({"boxes": [{"xyxy": GT_BOX, "name": "hex"}]}))
    assert service.ledger.total() == 0
    assert not (Path(settings.data_dir) / "feedback").exists()
