"""The prediction cache: its bounds and keys alone, then ``/predict`` -> ``/feedback`` through the
app over a scripted TorchServe (a hit sends no second inference; anything but the default
prediction at default thresholds misses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.embeddings import EmbeddingBackend
from gateway.prediction_cache import DEFAULT_THRESHOLDS, PredictionCache
from tests.gateway.fake_torchserve import FakeEmbedder, FakeTorchServe, encode_image
from tests.gateway.test_gateway_feedback import GT_BOX, feedback_form, read_rows, seed_registry
from yoloserve.images import decode_array
from yoloserve.schemas import ImageSize, ModelRef, PredictResponse, Timing

SQUARE = {"xyxy": GT_BOX, "name": "square"}


def _answer(version: str = "3", request_id: str = "r1") -> PredictResponse:
    return PredictResponse(
        request_id=request_id, model=ModelRef(name="yolo", version=version),
        image=ImageSize(width=4, height=4), boxes=[], timing_ms=Timing(total=1.0, model=1.0),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("stored_as", "asked", "hit"),
    [
        (("3", DEFAULT_THRESHOLDS), ("3", DEFAULT_THRESHOLDS), True),
        # TorchServe may echo "3.0" for an archive the registry calls "3".
        (("3.0", DEFAULT_THRESHOLDS), ("3", DEFAULT_THRESHOLDS), True),
        (("2", DEFAULT_THRESHOLDS), ("3", DEFAULT_THRESHOLDS), False),  # before a swap
        (("3", (0.1, None, None)), ("3", DEFAULT_THRESHOLDS), False),  # custom conf
        (("3", (None, 0.5, None)), ("3", DEFAULT_THRESHOLDS), False),
        (("3", (None, None, 10)), ("3", DEFAULT_THRESHOLDS), False),
        (("3", (0.25, None, None)), ("3", (0.25, None, None)), True),
    ],
)
def test_a_hit_needs_the_same_image_version_and_thresholds(
    stored_as: tuple[str, tuple[float | None, float | None, int | None]],
    asked: tuple[str, tuple[float | None, float | None, int | None]],
    hit: bool,
) -> None:
    cache = PredictionCache(max_entries=8, ttl_s=60)
    cache.put(b"image", stored_as[1], _answer(version=stored_as[0]))

    assert (cache.get(b"image", *asked) is not None) == hit
    assert cache.get(b"other image", *asked) is None
    assert (cache.stats.hits, cache.stats.misses) == (int(hit), 2 - int(hit))


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = PredictionCache(max_entries=8, ttl_s=60, clock=clock)
    cache.put(b"image", DEFAULT_THRESHOLDS, _answer())
    clock.now += 60
    assert cache.get(b"image", "3") is not None
    clock.now += 0.5
    assert cache.get(b"image", "3") is None
    assert len(cache) == 0 and cache.stats.entries == 0


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = PredictionCache(max_entries=2, ttl_s=60)
    cache.put(b"a", DEFAULT_THRESHOLDS, _answer(request_id="a"))
    cache.put(b"b", DEFAULT_THRESHOLDS, _answer(request_id="b"))
    assert cache.get(b"a", "3") is not None  # a is now the most recently used
    cache.put(b"c", DEFAULT_THRESHOLDS, _answer(request_id="c"))

    assert cache.get(b"b", "3") is None
    assert [cache.get(k, "3").request_id for k in (b"a", b"c")] == ["a", "c"]  # type: ignore[union-attr]
    assert len(cache) == 2


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache = PredictionCache(max_entries=0, ttl_s=60)
    cache.put(b"a", DEFAULT_THRESHOLDS, _answer())
    assert cache.get(b"a", "3") is None and len(cache) == 0


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, remembering every box it was asked to embed."""

    def __init__(self) -> None:
        self.embedded: list[list[float]] = []

    def embed(self, image: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
        self.embedded += [list(map(float, box)) for box in boxes]
        return super().embed(image, boxes)


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def fake_embedder_loader(embedder: CountingEmbedder) -> Callable[[], EmbeddingBackend]:
    return lambda: EmbeddingBackend(embedder=embedder, decode=decode_array)


@pytest.fixture
def seeded_client(settings: Settings, client: TestClient) -> Iterator[TestClient]:
    seed_registry(settings.store.url)
    yield client


def _predict(client: TestClient, query: str = "") -> str:
    response = client.post(f"/predict{query}", files={"file": ("a.png", encode_image("PNG"))})
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def test_feedback_after_predict_reuses_the_prediction(
    seeded_client: TestClient, fake_ts: FakeTorchServe, settings: Settings
) -> None:
    request_id = _predict(seeded_client)
    response = seeded_client.post(
        "/feedback", **feedback_form([SQUARE], request_id=request_id)
    )

    assert response.status_code == 201, response.text
    assert len(fake_ts.predict_requests) == 1, "no second inference"
    assert response.headers["X-Model-Version"] == "3"
    rows = read_rows(settings.data_dir)
    # The same rows as with a fresh prediction (test_gateway_feedback's first test).
    assert [(r["target"], r["prediction"]) for r in rows] == [
        ("square", "triangle"), ("__background__", "circle"), ("__background__", "square")
    ]
    metrics = seeded_client.get("/metrics").text
    assert 'gateway_prediction_cache_lookups_total{result="hit"} 1.0' in metrics
    assert 'gateway_prediction_cache_lookups_total{result="miss"} 0.0' in metrics
    assert "gateway_prediction_cache_entries 1.0" in metrics


@pytest.mark.parametrize("query", ["?conf=0.1", "?iou=0.3", "?max_det=2"])
def test_feedback_after_a_predict_with_other_thresholds_predicts_again(
    seeded_client: TestClient, fake_ts: FakeTorchServe, query: str
) -> None:
    _predict(seeded_client, query)
    response = seeded_client.post("/feedback", **feedback_form([SQUARE]))

    assert response.status_code == 201, response.text
    (_, fresh) = fake_ts.predict_requests
    # The fresh prediction is the default one: no thresholds sent.
    assert b'name="conf"' not in fresh.content and b'name="iou"' not in fresh.content
    assert b'name="max_det"' not in fresh.content


def test_a_predict_pinned_to_the_default_version_is_the_default_prediction(
    seeded_client: TestClient, fake_ts: FakeTorchServe
) -> None:
    _predict(seeded_client, "?version=3")
    response = seeded_client.post("/feedback", **feedback_form([SQUARE]))

    assert response.status_code == 201, response.text
    assert len(fake_ts.predict_requests) == 1


def test_a_predict_of_another_version_than_the_default_is_not_reused(
    seeded_client: TestClient, fake_ts: FakeTorchServe
) -> None:
    answer = {"model": {"name": "yolo", "version": "2"}, "image": {"width": 64, "height": 48},
              "boxes": []}
    fake_ts.predict = lambda request: httpx.Response(200, json=answer)
    _predict(seeded_client, "?version=2")
    seeded_client.post("/feedback", **feedback_form([SQUARE]))

    assert len(fake_ts.predict_requests) == 2


def test_embeddings_of_the_prediction_are_not_computed_again(
    seeded_client: TestClient, fake_ts: FakeTorchServe, embedder: CountingEmbedder,
    settings: Settings,
) -> None:
    _predict(seeded_client, "?embeddings=true")
    assert len(embedder.embedded) == 3  # the three predicted boxes
    embedder.embedded.clear()
    # The user confirms the triangle as it was predicted and adds a box the model missed.
    boxes = [{"xyxy": GT_BOX, "name": "triangle"},
             {"xyxy": [1.0, 30.0, 9.0, 40.0], "name": "circle"}]
    response = seeded_client.post("/feedback", **feedback_form(boxes))

    assert response.status_code == 201, response.text
    # Only the missed box is new; the triangle and the two unmatched predictions were embedded.
    assert embedder.embedded == [[1.0, 30.0, 9.0, 40.0]]
    rows = read_rows(settings.data_dir)
    stored = [float(rows[0][f"emb_{i}"]) for i in range(4)]
    assert stored == pytest.approx([v / 100 for v in GT_BOX])
    assert len(fake_ts.predict_requests) == 1
