"""The review queue's routes over a scripted TorchServe: sampling after /predict, listing,
images, dismiss, feedback with ``review_id``, 404/409, keys, rate limit, restarts, metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error
from tests.gateway.test_gateway_feedback import GT_BOX, read_rows, seed_registry
from tests.gateway.test_gateway_review_store import legacy_review_db
from yoloserve.store.settings import StoreSettings

# The fake handler's least confident box is 0.51: a band around 0.5 makes it "uncertain".
UNCERTAIN = {"review_conf_threshold": 0.5, "review_conf_band": 0.05}


@pytest.fixture
def review_client(build_app: Callable[..., FastAPI], settings: Settings) -> Iterator[TestClient]:
    seed_registry(settings.store.url)
    with TestClient(build_app(**UNCERTAIN)) as client:
        yield client


def _predict(client: TestClient, image: bytes, path: str = "/predict") -> httpx.Response:
    response = client.post(path, files={"file": ("a.png", image, "image/png")})
    assert response.status_code == 200, response.text
    return response


def _feedback(client: TestClient, image: bytes, review_id: str | None, **headers: str) -> Any:
    labels: dict[str, Any] = {"boxes": [{"xyxy": GT_BOX, "name": "square"}]}
    if review_id is not None:
        labels["review_id"] = review_id
    return client.post(
        "/feedback",
        files={"file": ("a.png", image, "image/png")},
        data={"labels": json.dumps(labels)},
        headers=headers,
    )


def _metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line {line_start}")


def test_a_prediction_near_the_threshold_enters_the_queue_with_its_image(
    review_client: TestClient, png_bytes: bytes
) -> None:
    predicted = _predict(review_client, png_bytes).json()

    queue = review_client.get("/review").json()

    assert queue["total"] == 1
    (item,) = queue["items"]
    assert item["reason"] == "uncertain"
    assert item["model_version"] == "3"
    assert item["request_id"] == predicted["request_id"]
    assert item["image"] == {"width": 64, "height": 48}
    assert item["boxes"] == predicted["boxes"]
    assert item["created_at"]
    assert 0.0 <= item["priority"] <= 1.0
    image = review_client.get(item["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == png_bytes


def test_a_confident_prediction_is_not_sampled(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    # Default band 0.25 +- 0.15: the fake's boxes (0.51..0.97) are all well above it.
    with TestClient(build_app()) as client:
        _predict(client, png_bytes)
        assert client.get("/review").json() == {"items": [], "total": 0}


def test_predict_image_samples_too(review_client: TestClient, png_bytes: bytes) -> None:
    _predict(review_client, png_bytes, "/predict/image")
    assert review_client.get("/review").json()["total"] == 1


def test_no_strategy_means_no_queue(build_app: Callable[..., FastAPI], png_bytes: bytes) -> None:
    with TestClient(build_app(review_strategies=[], **UNCERTAIN)) as client:
        _predict(client, png_bytes)
        assert client.get("/review").json()["total"] == 0


def test_dismiss_closes_once_then_conflicts(review_client: TestClient, png_bytes: bytes) -> None:
    _predict(review_client, png_bytes)
    item = review_client.get("/review").json()["items"][0]

    first = review_client.post(f"/review/{item['review_id']}/dismiss")
    second = review_client.post(f"/review/{item['review_id']}/dismiss")

    assert first.status_code == 204 and first.content == b""
    assert review_client.get("/review").json() == {"items": [], "total": 0}
    assert_error(second, 409, "review_item_closed")
    assert_error(review_client.get(item["image_url"]), 409, "review_item_closed")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/review/rv-nope/dismiss", 404, "unknown_review_item"),
        ("GET", "/review/rv-nope/image", 404, "unknown_review_item"),
        ("POST", "/review/bad%20id!/dismiss", 400, "invalid_parameter"),
        ("GET", "/review?limit=0", 400, "invalid_parameter"),
        ("GET", "/review?limit=101", 400, "invalid_parameter"),
        ("GET", "/review?limit=ten", 400, "invalid_parameter"),
    ],
)
def test_bad_ids_and_limits_get_a_json_error(
    review_client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    assert_error(review_client.request(method, path), status, code)


def test_limit_caps_the_items_but_not_the_total(
    build_app: Callable[..., FastAPI], png_bytes: bytes, settings: Settings
) -> None:
    seed_registry(settings.store.url)
    with TestClient(build_app(**UNCERTAIN)) as client:
        for _ in range(3):
            _predict(client, png_bytes)
        queue = client.get("/review?limit=2").json()
    assert len(queue["items"]) == 2 and queue["total"] == 3


def test_dismiss_needs_a_key_when_keys_are_configured(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    with TestClient(build_app(api_keys=["user"], admin_api_keys=["admin"], **UNCERTAIN)) as client:
        _predict(client, png_bytes)
        # Reading the queue is a read route: open.
        item = client.get("/review").json()["items"][0]
        assert client.get(item["image_url"]).status_code == 200
        path = f"/review/{item['review_id']}/dismiss"
        assert_error(client.post(path), 401, "unauthorized")
        assert_error(client.post(path, headers={"X-API-Key": "wrong"}), 403, "forbidden")
        assert client.post(path, headers={"X-API-Key": "user"}).status_code == 204


def test_feedback_with_review_id_closes_the_item(
    review_client: TestClient, png_bytes: bytes, settings: Settings
) -> None:
    _predict(review_client, png_bytes)
    item = review_client.get("/review").json()["items"][0]

    answer = _feedback(review_client, png_bytes, item["review_id"])

    assert answer.status_code == 201, answer.text
    assert review_client.get("/review").json()["total"] == 0
    rows = len(read_rows(settings.data_dir))
    again = _feedback(review_client, png_bytes, item["review_id"])
    assert_error(again, 409, "review_item_closed")
    assert len(read_rows(settings.data_dir)) == rows, "a refused feedback stores nothing"
    assert_error(review_client.post(f"/review/{item['review_id']}/dismiss"), 409,
                 "review_item_closed")


def test_feedback_with_an_unknown_review_id_stores_nothing_and_spends_no_model_time(
    review_client: TestClient, png_bytes: bytes, fake_ts: FakeTorchServe, settings: Settings
) -> None:
    calls = len(fake_ts.predict_requests)
    assert_error(_feedback(review_client, png_bytes, "rv-unknown"), 404, "unknown_review_item")
    assert len(fake_ts.predict_requests) == calls
    assert read_rows(settings.data_dir) == []


def test_feedback_with_a_malformed_review_id_is_a_schema_violation(
    review_client: TestClient, png_bytes: bytes
) -> None:
    assert_error(_feedback(review_client, png_bytes, "../../etc"), 422, "validation_error")


def test_feedback_without_review_id_leaves_the_queue_alone(
    review_client: TestClient, png_bytes: bytes
) -> None:
    _predict(review_client, png_bytes)
    assert _feedback(review_client, png_bytes, None).status_code == 201
    assert review_client.get("/review").json()["total"] == 1


def test_rate_limit_caps_items_per_minute(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    with TestClient(build_app(review_max_per_minute=2, **UNCERTAIN)) as client:
        for _ in range(4):
            _predict(client, png_bytes)
        assert client.get("/review").json()["total"] == 2


def test_the_queue_survives_a_restart(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    with TestClient(build_app(**UNCERTAIN)) as client:
        _predict(client, png_bytes)
        before = client.get("/review").json()
    with TestClient(build_app(**UNCERTAIN)) as client:
        after = client.get("/review").json()
        image = client.get(after["items"][0]["image_url"])
    assert after == before
    assert image.content == png_bytes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_gateways_over_one_database_are_one_queue(
    build_app: Callable[..., FastAPI],
    settings: Settings,
    png_bytes: bytes,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Two replicas (two apps: each its own review service and rate limiter) over one store."""
    store = settings.store
    if backend == "postgresql":
        store = StoreSettings(database_url=request.getfixturevalue("postgres_url"))
    seed_registry(store.url)
    overrides = {**UNCERTAIN, "store": store, "review_max_per_minute": 3}
    with TestClient(build_app(**overrides)) as first, TestClient(build_app(**overrides)) as second:
        _predict(first, png_bytes)
        (item,) = second.get("/review").json()["items"]
        assert second.get(item["image_url"]).content == png_bytes
        assert second.post(f"/review/{item['review_id']}/dismiss").status_code == 204
        assert first.post(f"/review/{item['review_id']}/dismiss").status_code == 409
        assert _feedback(first, png_bytes, item["review_id"]).status_code == 409

        for client in (first, second, first, second):
            _predict(client, png_bytes)

        # One budget of 3 a minute for both: 2 more were admitted, not 2 per gateway.
        assert first.get("/review").json()["total"] == 2
        assert second.get("/review").json()["total"] == 2
        assert _metric(first, "gateway_review_queue_depth ") == 2


def test_the_review_db_of_an_older_release_is_imported_at_start(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    legacy = legacy_review_db(settings.review_folder)
    with TestClient(build_app()) as client:
        body = client.get("/review").json()
        image = client.get(body["items"][1]["image_url"])
    assert body["total"] == 2
    assert [item["review_id"] for item in body["items"]] == [
        "rv-000000000000000c", "rv-000000000000000a"
    ]
    assert image.content == b"png-a" and image.headers["content-type"] == "image/png"
    assert not legacy.exists() and (settings.review_folder / "review.db.migrated").is_file()


def test_metrics_show_depth_and_reviewed_items(
    review_client: TestClient, png_bytes: bytes
) -> None:
    depth = "gateway_review_queue_depth "
    labelled = 'gateway_review_items_reviewed_total{outcome="labelled",reason="uncertain"}'
    dismissed = 'gateway_review_items_reviewed_total{outcome="dismissed",reason="uncertain"}'
    assert _metric(review_client, depth) == 0
    assert _metric(review_client, labelled) == 0

    _predict(review_client, png_bytes)
    _predict(review_client, png_bytes)
    assert _metric(review_client, depth) == 2
    assert _metric(review_client, 'gateway_review_sampled_total{reason="uncertain"}') == 2
    first, second = (item["review_id"] for item in review_client.get("/review").json()["items"])
    _feedback(review_client, png_bytes, first)
    review_client.post(f"/review/{second}/dismiss")

    assert _metric(review_client, depth) == 0
    assert _metric(review_client, labelled) == 1
    assert _metric(review_client, dismissed) == 1


def _write_ref(path: Path, rows: list[tuple[list[float], str]]) -> None:
    dim = len(rows[0][0])
    lines = [",".join([*(f"emb_{i}" for i in range(dim)), "target"])]
    lines += [",".join([*(str(v) for v in vector), target]) for vector, target in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_novel_boxes_are_sampled_from_their_embeddings(
    build_app: Callable[..., FastAPI], png_bytes: bytes, settings: Settings
) -> None:
    # The fake embedder gives xyxy / 100; reference boxes all sit near the origin, so the
    # fake's [10, 5, 50, 45] triangle (0.1, 0.05, 0.5, 0.45) is far from every one of them.
    grid = [([i / 1000, j / 1000, 0.0, 0.0], "circle") for i in range(4) for j in range(4)]
    _write_ref(settings.data_dir / "ref_data.csv", grid)
    with TestClient(build_app(review_strategies=["novel"])) as client:
        _predict(client, png_bytes)
        items = client.get("/review").json()["items"]
    assert [item["reason"] for item in items] == ["novel"]


def test_novel_is_off_without_an_embedder(
    build_app: Callable[..., FastAPI], png_bytes: bytes, settings: Settings
) -> None:
    grid = [([i / 1000, j / 1000, 0.0, 0.0], "circle") for i in range(4) for j in range(4)]
    _write_ref(settings.data_dir / "ref_data.csv", grid)
    with TestClient(build_app(embedder=False, review_strategies=["novel"])) as client:
        _predict(client, png_bytes)
        assert client.get("/review").json()["total"] == 0


def test_rare_classes_are_sampled(
    build_app: Callable[..., FastAPI], png_bytes: bytes, settings: Settings
) -> None:
    # circle is 1 box in 20 of the reference: the fake's circle box makes the prediction rare.
    rows = [([0.0], "square")] * 10 + [([0.0], "triangle")] * 9 + [([0.0], "circle")]
    _write_ref(settings.data_dir / "ref_data.csv", rows)
    with TestClient(build_app(review_strategies=["rare"], review_rare_share=0.1)) as client:
        _predict(client, png_bytes)
        (item,) = client.get("/review").json()["items"]
    assert item["reason"] == "rare"
    assert item["priority"] == pytest.approx(0.5)


def test_openapi_documents_the_review_routes(review_client: TestClient) -> None:
    spec = review_client.get("/openapi.json").json()
    assert {"/review", "/review/{review_id}/image", "/review/{review_id}/dismiss"} <= set(
        spec["paths"]
    )
    dismiss = spec["paths"]["/review/{review_id}/dismiss"]["post"]
    assert {"204", "404", "409"} <= set(dismiss["responses"])
    assert "review_id" in spec["components"]["schemas"]["ReviewItem"]["properties"]
