"""``scripts.scenario.budget``: which images each mode labels, and what it sends for them.

The gateway is faked at the HTTP level (``tests/gateway_client/fake_gateway.py``); the
retrain and the mAP50 scoring (real TorchServe, Ultralytics) are the measurement's, not these
tests'.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway_client import GatewayClient, ReviewItem
from scripts.scenario.budget import (
    Choice,
    choose_from_queue,
    choose_random,
    label,
    predict_pool,
    read_queue,
)
from scripts.scenario.cli import app
from scripts.scenario.errors import ScenarioError
from scripts.scenario.isolated import NO_RETRAIN_EVERY_K, isolated_env
from tests.gateway_client.fake_gateway import (
    BASE,
    FEEDBACK_BODY,
    PREDICT_BODY,
    FakeGateway,
    parse_multipart,
    review_item,
)
from tests.scripts.test_scenario_feedback import _images

NOT_TRIGGERED = {**FEEDBACK_BODY, "retrain": {"triggered": False, "job_id": None,
                                              "next_at_rows": 1_000_000}}


def _client(fake: FakeGateway) -> GatewayClient:
    return GatewayClient(BASE, api_key="k", transport=httpx.MockTransport(fake.handle))


def _item(review_id: str, request_id: str | None, reason: str = "uncertain") -> ReviewItem:
    return ReviewItem.from_json({**review_item(review_id, reason), "request_id": request_id})


def test_random_choices_are_seeded_distinct_and_capped(tmp_path: Path) -> None:
    pool = [tmp_path / f"{i}.jpg" for i in range(20)]
    first = choose_random(pool, 5, seed=3)
    assert first == choose_random(pool, 5, seed=3)
    assert first != choose_random(pool, 5, seed=4)
    assert len({c.image for c in first}) == 5
    assert all(c.review_id is None for c in first)
    assert {c.image for c in choose_random(pool[:3], 10, seed=0)} == set(pool[:3])


def test_queue_choices_follow_the_queue_and_skip_what_is_not_ours(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.jpg" for n in "abc")
    by_request = {"req-a": a, "req-b": b, "req-c": c}
    items = [
        _item("rv-1", "req-b", "novel"),
        _item("rv-2", "req-someone-else"),  # another client's traffic: no true labels
        _item("rv-3", None),
        _item("rv-4", "req-b"),  # the same image sampled twice: labelled once
        _item("rv-5", "req-a"),
        _item("rv-6", "req-c"),
    ]
    chosen = choose_from_queue(items, by_request, budget=2)
    assert chosen == [Choice(b, "rv-1", "novel", "req-b"), Choice(a, "rv-5", "uncertain", "req-a")]
    assert len(choose_from_queue(items, by_request, budget=10)) == 3


def test_the_pool_is_predicted_and_mapped_by_request_id(tmp_path: Path) -> None:
    pool = _images(tmp_path, 3)
    ids = iter(["r1", "r2", "r3"])

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/predict"
        return httpx.Response(200, json={**PREDICT_BODY, "request_id": next(ids)})

    with GatewayClient(BASE, transport=httpx.MockTransport(handler)) as gateway:
        assert predict_pool(gateway, pool) == dict(zip(["r1", "r2", "r3"], pool, strict=True))


def test_label_sends_the_true_boxes_with_review_and_request_ids(tmp_path: Path) -> None:
    image = _images(tmp_path, 1)[0]
    fake = FakeGateway(review=[review_item("rv-1")])
    fake.fail[("POST", "/feedback")] = httpx.Response(201, json=NOT_TRIGGERED)
    with _client(fake) as gateway:
        rows = label(gateway, [Choice(image, "rv-1", "uncertain", "req-1"), Choice(image)])

    assert rows == 2 * NOT_TRIGGERED["rows_written"]
    first, second = (
        json.loads(parse_multipart(r)["labels"][2])
        for r in fake.requests if r.url.path == "/feedback"
    )
    # 64x48 image, YOLO label "0 0.5 0.5 0.25 0.5": a circle at [24, 12, 40, 36].
    assert first == {"request_id": "req-1", "review_id": "rv-1",
                     "boxes": [{"xyxy": [24.0, 12.0, 40.0, 36.0], "name": "circle"}]}
    assert second == {"boxes": [{"xyxy": [24.0, 12.0, 40.0, 36.0], "name": "circle"}]}


def test_a_feedback_that_starts_a_retrain_stops_the_run(tmp_path: Path) -> None:
    image = _images(tmp_path, 1)[0]
    with _client(FakeGateway()) as gateway:  # its feedback answer says triggered: r-0007
        with pytest.raises(ScenarioError, match="r-0007.*RETRAIN_EVERY_K"):
            label(gateway, [Choice(image)])


def test_read_queue_asks_one_page_at_most() -> None:
    fake = FakeGateway(review=[review_item(f"rv-{i}") for i in range(3)])
    with _client(fake) as gateway:
        items, total = read_queue(gateway, 500)
    assert fake.last("GET", "/review").url.params["limit"] == "100"
    assert (len(items), total) == (3, 3)


def test_a_missing_queue_is_a_scenario_error() -> None:
    fake = FakeGateway()
    fake.fail[("GET", "/review")] = httpx.ConnectError("refused")
    with _client(fake) as gateway, pytest.raises(ScenarioError, match="GET /review"):
        read_queue(gateway, 5)


def test_isolated_stacks_never_retrain_by_themselves_and_let_the_pool_into_the_queue(
    tmp_path: Path,
) -> None:
    env = isolated_env(tmp_path / "shapes", pool=300)
    assert int(env["RETRAIN_EVERY_K"]) == NO_RETRAIN_EVERY_K
    assert env["RETRAIN_REF_DIR"] == str(tmp_path / "shapes")
    assert int(env["GATEWAY_REVIEW_MAX_PER_MINUTE"]) >= 300
    assert int(env["GATEWAY_REVIEW_MAX_ITEMS"]) >= 300


def test_an_unknown_mode_is_refused() -> None:
    result = CliRunner().invoke(app, ["--mode", "smart"])
    assert result.exit_code == 2
    assert "choose loop, queue or random" in " ".join(result.output.split())


def test_isolated_without_reference_data_stops_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "--mode", "queue", "--isolated", "--ref-data", str(tmp_path / "none.csv"),
        "--out", str(tmp_path / "out"),
    ])
    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "scenario stopped" in output and "make ref-data" in output
