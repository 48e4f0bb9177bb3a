"""``POST /feedback`` over a scripted TorchServe: rows, files, bad input, auth, concurrency."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error, encode_image
from yoloserve.feedback.export import ProdCsvExporter
from yoloserve.feedback.matching import BACKGROUND
from yoloserve.feedback.store import prod_header
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import open_store
from yoloserve.store.settings import sqlite_url

CLASSES = ["circle", "square", "triangle"]
# Over the triangle the fake handler finds at [10, 5, 50, 45] (IoU 1), so one matched pair.
GT_BOX = [10.0, 5.0, 50.0, 45.0]


def seed_registry(store_url: str, classes: list[str] | None = None) -> None:
    """A registry whose default version 3 has these classes (what GET /models shows)."""
    Registry(open_store(store_url)).add_version(
        sha256="0" * 64, mar="yolo_v3.mar", classes=classes or CLASSES, version="3"
    )


def feedback_form(
    boxes: list[dict[str, Any]] | None = None,
    request_id: str | None = None,
    image: bytes | None = None,
    raw_labels: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``client.post`` for one feedback."""
    labels: dict[str, Any] = {"boxes": boxes if boxes is not None else []}
    if request_id is not None:
        labels["request_id"] = request_id
    return {
        "files": {"file": ("a.png", image if image is not None else encode_image("PNG"))},
        "data": {"labels": raw_labels if raw_labels is not None else json.dumps(labels)},
    }


def read_rows(data_dir: Path) -> list[dict[str, str]]:
    """``prod_data.csv``'s rows once the store's rows are exported (what the gateway's background
    exporter does after each commit). The tests' store is ``yoloserve.db`` beside ``data/``."""
    database = data_dir.parent / "yoloserve.db"
    if database.exists():
        ProdCsvExporter(open_store(sqlite_url(database)), data_dir / "prod_data.csv").export()
    path = data_dir / "prod_data.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stored_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "feedback").rglob("*") if p.is_file())


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    return settings.data_dir


@pytest.fixture
def seeded(settings: Settings) -> None:
    seed_registry(settings.store.url)


@pytest.mark.usefixtures("seeded")
def test_feedback_writes_rows_image_and_label(
    client: TestClient, fake_ts: FakeTorchServe, data_dir: Path
) -> None:
    response = client.post(
        "/feedback", **feedback_form([{"xyxy": GT_BOX, "name": "square"}], request_id="req-1")
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"feedback_id", "rows_written", "prod_rows_total", "retrain"}
    # One ground-truth row (square, predicted triangle) + the two unmatched predictions.
    assert body["rows_written"] == 3
    assert body["prod_rows_total"] == 3
    assert body["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 50}
    assert response.headers["X-Model-Version"] == "3"

    rows = read_rows(data_dir)
    with open(data_dir / "prod_data.csv", newline="") as f:
        assert next(csv.reader(f)) == prod_header(4)
    assert [(r["target"], r["prediction"]) for r in rows] == [
        ("square", "triangle"),
        (BACKGROUND, "circle"),  # unmatched predictions follow, by confidence
        (BACKGROUND, "square"),
    ]
    assert {r["feedback_id"] for r in rows} == {body["feedback_id"]}
    assert {r["model_version"] for r in rows} == {"3"}
    assert {r["request_id"] for r in rows} == {"req-1"}
    # The fake embedder's vector is the box / 100: the ground-truth row embeds the GT box.
    assert [float(rows[0][f"emb_{i}"]) for i in range(4)] == pytest.approx(
        [v / 100 for v in GT_BOX]
    )

    image = data_dir / rows[0]["image"]
    label = data_dir / "feedback" / "labels" / f"{body['feedback_id']}.txt"
    assert image.read_bytes() == encode_image("PNG")
    assert stored_files(data_dir) == sorted([image, label])
    # square is class 1; centre (30, 25), size (40, 40) in a 64x48 image.
    assert label.read_text() == "1 0.468750 0.520833 0.625000 0.833333\n"

    # The gateway asked the default version with the default thresholds.
    (sent,) = fake_ts.predict_requests
    assert sent.url.path == "/predictions/yolo"
    assert b'name="conf"' not in sent.content and b'name="iou"' not in sent.content


@pytest.mark.usefixtures("seeded")
def test_feedback_without_request_id_links_this_request(client: TestClient, data_dir: Path) -> None:
    response = client.post("/feedback", **feedback_form([{"xyxy": GT_BOX, "name": "circle"}]))

    assert response.status_code == 201, response.text
    assert {r["request_id"] for r in read_rows(data_dir)} == {response.headers["X-Request-ID"]}


@pytest.mark.usefixtures("seeded")
def test_empty_boxes_record_the_false_positives(
    client: TestClient, fake_ts: FakeTorchServe, data_dir: Path
) -> None:
    body = client.post("/feedback", **feedback_form([])).json()

    assert body["rows_written"] == 3
    assert {r["target"] for r in read_rows(data_dir)} == {BACKGROUND}
    label = data_dir / "feedback" / "labels" / f"{body['feedback_id']}.txt"
    assert label.read_text() == ""  # a background image for retraining


@pytest.mark.usefixtures("seeded")
def test_feedback_counts_metrics(client: TestClient) -> None:
    client.post("/feedback", **feedback_form([{"xyxy": GT_BOX, "name": "square"}]))
    client.post("/feedback", **feedback_form([]))

    text = client.get("/metrics").text
    assert "gateway_feedback_requests_total 2.0" in text
    assert "gateway_feedback_rows_total 6.0" in text
    assert 'gateway_requests_total{method="POST",route="/feedback",status="201"} 2.0' in text


_GOOD = [{"xyxy": GT_BOX, "name": "square"}]


@pytest.mark.parametrize(
    ("form", "status", "code", "reaches_model"),
    [
        ({"data": {"labels": json.dumps({"boxes": _GOOD})}}, 422, "validation_error", False),
        ({"files": {"file": ("a.png", encode_image("PNG"))}}, 422, "validation_error", False),
        (feedback_form(_GOOD, image=b"not an image"), 415, "invalid_image", False),
        (feedback_form(_GOOD, image=encode_image("GIF")), 415, "unsupported_image_format", False),
        (feedback_form(raw_labels="not json"), 422, "validation_error", False),
        (feedback_form(raw_labels='{"boxes": "square"}'), 422, "validation_error", False),
        (feedback_form(raw_labels='[{"xyxy": [1, 2, 3, 4]}]'), 422, "validation_error", False),
        (feedback_form([{"xyxy": [1, 2, 3], "name": "square"}]), 422, "validation_error", False),
        (feedback_form([{"xyxy": [9, 2, 3, 4], "name": "square"}]), 422, "validation_error", False),
        (feedback_form([{"xyxy": GT_BOX}]), 422, "validation_error", False),
        (
            feedback_form([{"xyxy": GT_BOX, "name": "square", "conf": 1}]),
            422,
            "validation_error",
            False,
        ),
        (feedback_form([{"xyxy": GT_BOX, "name": "hexagon"}]), 400, "unknown_class", False),
        (
            feedback_form([{"xyxy": [100, 100, 120, 120], "name": "square"}]),
            400,
            "invalid_labels",
            True,
        ),
        (feedback_form(_GOOD, request_id="line\nbreak"), 400, "invalid_labels", True),
    ],
    ids=[
        "no-file",
        "no-labels",
        "not-an-image",
        "gif",
        "labels-not-json",
        "boxes-not-a-list",
        "labels-a-list",
        "three-coordinates",
        "corners-swapped",
        "no-name",
        "unknown-field",
        "unknown-class",
        "box-outside-image",
        "request-id-control-char",
    ],
)
@pytest.mark.usefixtures("seeded")
def test_bad_feedback_is_refused_and_nothing_is_written(
    client: TestClient,
    fake_ts: FakeTorchServe,
    data_dir: Path,
    form: dict[str, Any],
    status: int,
    code: str,
    reaches_model: bool,
) -> None:
    response = client.post("/feedback", **form)

    assert_error(response, status, code)
    assert read_rows(data_dir) == []
    assert not (data_dir / "feedback").exists() or stored_files(data_dir) == []
    # Whatever can be checked without the model is checked before any model time is spent.
    assert bool(fake_ts.predict_requests) == reaches_model


def test_feedback_without_a_registry_is_unavailable(client: TestClient, data_dir: Path) -> None:
    response = client.post("/feedback", **feedback_form(_GOOD))

    assert_error(response, 503, "model_not_ready")
    assert read_rows(data_dir) == []


@pytest.mark.usefixtures("seeded")
def test_feedback_without_embedder_is_unavailable_and_spends_no_model_time(
    build_app: Callable[..., FastAPI], fake_ts: FakeTorchServe, data_dir: Path
) -> None:
    with TestClient(build_app(embedder=False)) as client:
        response = client.post("/feedback", **feedback_form(_GOOD))

    assert_error(response, 503, "embeddings_unavailable")
    assert fake_ts.predict_requests == []
    assert read_rows(data_dir) == []


@pytest.mark.usefixtures("seeded")
def test_model_server_down_writes_nothing(
    client: TestClient, fake_ts: FakeTorchServe, data_dir: Path
) -> None:
    fake_ts.predict = lambda request: httpx.Response(500, json={"code": 500, "message": "died"})

    assert_error(client.post("/feedback", **feedback_form(_GOOD)), 502, "model_server_error")
    assert read_rows(data_dir) == []
    assert not (data_dir / "feedback").exists() or stored_files(data_dir) == []


@pytest.mark.usefixtures("seeded")
def test_other_prod_header_is_a_conflict(client: TestClient, data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "prod_data.csv").write_text("emb_0,target\n0.5,circle\n")

    assert_error(client.post("/feedback", **feedback_form(_GOOD)), 409, "csv_schema_mismatch")
    assert (data_dir / "prod_data.csv").read_text() == "emb_0,target\n0.5,circle\n"
    assert stored_files(data_dir) == []


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("wrong", 403, "forbidden"),
        ("user-key", 201, None),
        ("admin-key", 201, None),
    ],
)
@pytest.mark.usefixtures("seeded")
def test_feedback_needs_a_key_when_keys_are_set(
    build_app: Callable[..., FastAPI],
    data_dir: Path,
    key: str | None,
    status: int,
    code: str | None,
) -> None:
    app = build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])
    headers = {"X-API-Key": key} if key else {}
    with TestClient(app) as client:
        response = client.post("/feedback", headers=headers, **feedback_form(_GOOD))

    if code is None:
        assert response.status_code == status, response.text
        assert len(read_rows(data_dir)) == 3
    else:
        assert_error(response, status, code)
        assert read_rows(data_dir) == []


@pytest.mark.usefixtures("seeded")
async def test_concurrent_feedback_loses_no_row(
    build_app: Callable[..., FastAPI], data_dir: Path
) -> None:
    app = build_app()
    clients = 32
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client,
    ):

        async def send(i: int) -> httpx.Response:
            boxes = [{"xyxy": GT_BOX, "name": CLASSES[i % 3]}]
            return await client.post("/feedback", **feedback_form(boxes, request_id=f"c{i}"))

        responses = await asyncio.gather(*(send(i) for i in range(clients)))

    assert [r.status_code for r in responses] == [201] * clients
    bodies = [r.json() for r in responses]
    rows = read_rows(data_dir)
    assert len(rows) == 3 * clients
    # Every commit saw its own rows on top of all earlier ones: totals are distinct multiples.
    assert sorted(b["prod_rows_total"] for b in bodies) == [3 * (i + 1) for i in range(clients)]
    assert {r["request_id"] for r in rows} == {f"c{i}" for i in range(clients)}
    for body in bodies:
        mine = [r for r in rows if r["feedback_id"] == body["feedback_id"]]
        assert len(mine) == 3
    assert len(stored_files(data_dir)) == 2 * clients
