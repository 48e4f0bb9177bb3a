"""``POST /feedback`` sent again: the ``Idempotency-Key`` header and the prediction's
``request_id`` make a repeat return the first answer and store nothing, across app restarts and
after a crash between the commit and the answer (over a scripted TorchServe)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.idempotency import MAX_KEY_LENGTH, KeyLocks
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error, encode_image
from tests.gateway.test_gateway_feedback import GT_BOX, feedback_form, read_rows, seed_registry
from yoloserve.store.engine import open_store
from yoloserve.store.tables import IdempotencyKeyRow

SQUARE = {"xyxy": GT_BOX, "name": "square"}
CIRCLE = {"xyxy": [1.0, 30.0, 9.0, 40.0], "name": "circle"}


@pytest.fixture(autouse=True)
def seeded(settings: Settings) -> None:
    seed_registry(settings.store.url)


def _keyed(key: str, boxes: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {**feedback_form(boxes, **kw), "headers": {"Idempotency-Key": key}}


def _files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "feedback").rglob("*") if p.is_file())


def test_the_same_key_again_returns_the_first_answer_and_writes_nothing(
    client: TestClient, fake_ts: FakeTorchServe, settings: Settings
) -> None:
    first = client.post("/feedback", **_keyed("retry-me", [SQUARE]))
    files = _files(settings.data_dir)
    second = client.post("/feedback", **_keyed("retry-me", [SQUARE]))

    assert first.status_code == second.status_code == 201, second.text
    assert second.content == first.content
    assert second.headers["X-Model-Version"] == first.headers["X-Model-Version"] == "3"
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(read_rows(settings.data_dir)) == first.json()["rows_written"] == 3
    assert _files(settings.data_dir) == files
    assert len(fake_ts.predict_requests) == 1, "a replay runs no model either"


def test_another_key_is_another_feedback(client: TestClient, settings: Settings) -> None:
    first = client.post("/feedback", **_keyed("a", [SQUARE]))
    second = client.post("/feedback", **_keyed("b", [SQUARE]))

    assert first.json()["feedback_id"] != second.json()["feedback_id"]
    assert len(read_rows(settings.data_dir)) == 6


def test_a_key_reused_for_other_labels_is_refused(client: TestClient, settings: Settings) -> None:
    client.post("/feedback", **_keyed("k1", [SQUARE]))

    response = client.post("/feedback", **_keyed("k1", [CIRCLE]))
    assert_error(response, 409, "idempotency_key_reused")
    other_image = client.post("/feedback", **_keyed("k1", [SQUARE],
                                                    image=encode_image("PNG", (60, 50))))
    assert_error(other_image, 409, "idempotency_key_reused")
    assert len(read_rows(settings.data_dir)) == 3


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("x" * MAX_KEY_LENGTH, True),
        ("7f9c-2b/attempt 1", True),
        ("x" * (MAX_KEY_LENGTH + 1), False),
        ("", False),
        ("   ", False),
        ("caf\xe9", False),  # sent as Latin-1: not ASCII
        ("tab\there", False),
    ],
)
def test_key_must_be_1_to_128_printable_ascii_characters(
    client: TestClient, settings: Settings, key: str, valid: bool
) -> None:
    form = feedback_form([SQUARE])
    response = client.post("/feedback", **form, headers={"Idempotency-Key": key.encode("latin-1")})

    if valid:
        assert response.status_code == 201, response.text
    else:
        assert_error(response, 400, "invalid_idempotency_key")
        assert read_rows(settings.data_dir) == []


def test_the_first_answer_survives_a_restart(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    with TestClient(build_app()) as client:
        first = client.post("/feedback", **_keyed("across-restarts", [SQUARE]))
    with TestClient(build_app()) as client:  # a new process: the index comes from disk
        again = client.post("/feedback", **_keyed("across-restarts", [SQUARE]))
        assert_error(client.post("/feedback", **_keyed("across-restarts", [CIRCLE])), 409,
                     "idempotency_key_reused")

    assert again.status_code == 201 and again.content == first.content
    assert len(read_rows(settings.data_dir)) == 3


def _forget_answer(settings: Settings, feedback_id: str) -> None:
    """The crash of issue 11: rows and key committed, the gateway killed before the answer."""
    with open_store(settings.store.url).write() as session:
        row = session.get(IdempotencyKeyRow, feedback_id.removeprefix("idem-"))
        assert row is not None
        row.status, row.response = "stored", None
        row.created_at = datetime.now(UTC) - timedelta(minutes=5)


def test_rows_stored_without_an_answer_are_answered_on_retry_not_written_twice(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    with TestClient(build_app()) as client:
        client.post("/feedback", **_keyed("before", [CIRCLE]))
        first = client.post("/feedback", **_keyed("lost-answer", [SQUARE]))
        client.post("/feedback", **_keyed("after", [CIRCLE]))
    _forget_answer(settings, first.json()["feedback_id"])
    files = _files(settings.data_dir)

    with TestClient(build_app()) as client:
        retry = client.post("/feedback", **_keyed("lost-answer", [SQUARE]))
        again = client.post("/feedback", **_keyed("lost-answer", [SQUARE]))
        after = client.post("/feedback", **_keyed("after", [CIRCLE]))

    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    body = retry.json()
    # Rebuilt from the stored key: the same feedback, the total right after its own commit.
    assert {k: body[k] for k in ("feedback_id", "rows_written", "prod_rows_total")} == {
        k: first.json()[k] for k in ("feedback_id", "rows_written", "prod_rows_total")
    }
    assert retry.headers["X-Model-Version"] == "3"
    assert again.content == retry.content
    assert after.status_code == 201 and after.headers["Idempotent-Replayed"] == "true"
    rows = read_rows(settings.data_dir)
    assert len(rows) == 4 + 3 + 4  # each feedback once (a CIRCLE feedback is 4 rows)
    assert sum(r["feedback_id"] == body["feedback_id"] for r in rows) == 3
    assert _files(settings.data_dir) == files
    # The answer given on the retry is stored: found after a restart (the fingerprint too).
    with TestClient(build_app()) as client:
        later = client.post("/feedback", **_keyed("lost-answer", [SQUARE]))
        assert_error(client.post("/feedback", **_keyed("lost-answer", [CIRCLE])), 409,
                     "idempotency_key_reused")
    assert later.content == retry.content


def test_a_retry_of_a_feedback_that_was_never_stored_stores_it(
    build_app: Callable[..., FastAPI], settings: Settings, fake_ts: FakeTorchServe
) -> None:
    fake_ts.predict = lambda request: httpx.Response(503, json={"code": 503, "message": "busy"})
    with TestClient(build_app()) as client:
        failed = client.post("/feedback", **_keyed("k", [SQUARE]))
    assert failed.status_code == 503 and read_rows(settings.data_dir) == []

    fake_ts.predict = FakeTorchServe().predict
    with TestClient(build_app()) as client:
        stored = client.post("/feedback", **_keyed("k", [SQUARE]))
    assert stored.status_code == 201 and "Idempotent-Replayed" not in stored.headers
    assert len(read_rows(settings.data_dir)) == 3


def test_the_same_request_id_image_and_labels_again_is_a_retry(
    client: TestClient, settings: Settings
) -> None:
    first = client.post("/feedback", **feedback_form([SQUARE], request_id="pred-1"))
    again = client.post("/feedback", **feedback_form([SQUARE], request_id="pred-1"))
    corrected = client.post("/feedback", **feedback_form([CIRCLE], request_id="pred-1"))

    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    # Another correction of the same prediction is new feedback, not a retry.
    assert corrected.status_code == 201 and "Idempotent-Replayed" not in corrected.headers
    assert len(read_rows(settings.data_dir)) == 3 + 4


def test_without_key_or_request_id_every_request_is_new_feedback(
    client: TestClient, settings: Settings
) -> None:
    client.post("/feedback", **feedback_form([SQUARE]))
    client.post("/feedback", **feedback_form([SQUARE]))
    assert len(read_rows(settings.data_dir)) == 6
    with open_store(settings.store.url).read() as session:
        assert session.query(IdempotencyKeyRow).count() == 0


async def test_concurrent_requests_with_one_key_store_it_once(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    app = build_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http,
    ):
        form = _keyed("same", [SQUARE])
        answers = await asyncio.gather(*(http.post("/feedback", **form) for _ in range(8)))

    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert len(read_rows(settings.data_dir)) == 3
    assert json.loads(answers[0].content)["rows_written"] == 3


async def test_one_key_is_held_by_one_request_at_a_time() -> None:
    """Also when a third request comes just as the first lets go while the second still waits."""
    store = KeyLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    first_in = asyncio.Event()

    async def request(name: str, hold_s: float) -> None:
        async with store.hold("idem-x"):
            inside.append(name)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            first_in.set()
            await asyncio.sleep(hold_s)
            inside.remove(name)

    first = asyncio.create_task(request("a", 0.02))
    await first_in.wait()
    second = asyncio.create_task(request("b", 0.02))
    await first  # "a" let go; "b" is woken but has not run yet
    third = asyncio.create_task(request("c", 0.02))
    await asyncio.gather(second, third)

    assert overlaps == []
    assert store._locks == {}, "no lock is kept once nobody holds or waits"
