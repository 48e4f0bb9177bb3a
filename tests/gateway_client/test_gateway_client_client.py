"""``gateway_client.client``: the requests each method sends and the answers it parses."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway_client import GatewayError, JobFailed, LabelBox
from tests.gateway_client.fake_gateway import (
    FEEDBACK_BODY,
    MODELS_BODY,
    PREDICT_BODY,
    FakeGateway,
    answer,
    client_for,
    parse_multipart,
    png_bytes,
    review_item,
)


def test_predict_sends_image_and_options_and_parses() -> None:
    fake = FakeGateway()
    with client_for(fake.handle) as gw:
        pred = gw.predict(b"\x89PNG...", "a.png", "image/png", conf=0.3, iou=0.5, max_det=10)
    request = fake.last("POST", "/predict")
    assert dict(request.url.params) == {"conf": "0.3", "iou": "0.5", "max_det": "10"}
    assert parse_multipart(request)["file"] == ("a.png", "image/png", b"\x89PNG...")
    assert "X-API-Key" not in request.headers  # a read route
    assert pred.request_id == "req-0001"
    assert (pred.model_version, pred.width, pred.height) == ("2", 64, 48)
    assert [b.name for b in pred.boxes] == ["triangle", "circle"]
    assert pred.boxes[0].xyxy == (10.0, 8.0, 30.0, 28.0)
    assert pred.timing_ms == {"total": 41.2, "model": 35.0}
    assert pred.round_trip_ms >= 0


def test_predict_pins_a_version() -> None:
    fake = FakeGateway()
    with client_for(fake.handle) as gw:
        gw.predict(b"x", "a.png", "image/png", version="1")
    assert dict(fake.last("POST", "/predict").url.params) == {"version": "1"}


def test_predict_falls_back_to_version_header() -> None:
    body = {k: v for k, v in PREDICT_BODY.items() if k != "model"}
    response = httpx.Response(200, json=body, headers={"X-Model-Version": "7"})
    with client_for(answer(response)) as gw:
        assert gw.predict(b"x", "a.png", "image/png").model_version == "7"


def test_feedback_payload_and_answer() -> None:
    fake = FakeGateway()
    boxes = [LabelBox((1.0, 2.0, 3.333333, 4.0), "square")]
    with client_for(fake.handle, api_key="secret") as gw:
        result = gw.feedback(b"jpeg", "a.jpg", "image/jpeg", boxes, request_id="req-9")
    request = fake.last("POST", "/feedback")
    assert request.headers["X-API-Key"] == "secret"
    parts = parse_multipart(request)
    assert parts["file"] == ("a.jpg", "image/jpeg", b"jpeg")
    assert json.loads(parts["labels"][2]) == {
        "request_id": "req-9",
        "boxes": [{"xyxy": [1.0, 2.0, 3.33, 4.0], "name": "square"}],
    }
    assert result.rows_written == FEEDBACK_BODY["rows_written"]
    assert result.prod_rows_total == 148
    assert (result.retrain_triggered, result.job_id, result.next_at_rows) == (True, "r-0007", 200)


def test_feedback_with_no_boxes_and_no_key() -> None:
    fake = FakeGateway()
    with client_for(fake.handle, api_key=None) as gw:
        gw.feedback(b"png", "a.png", "image/png", [])
    request = fake.last("POST", "/feedback")
    assert "X-API-Key" not in request.headers
    assert json.loads(parse_multipart(request)["labels"][2]) == {"boxes": []}


def test_models_activate_retrain_and_job() -> None:
    fake = FakeGateway()
    with client_for(fake.handle) as gw:
        info = gw.models()
        assert info.default_version == "2"
        assert info.classes == MODELS_BODY["classes"]
        assert info.versions[0].parent is None and info.versions[1].parent == "1"
        assert info.versions[1].metrics == {"map50": 0.94, "map50_95": 0.77}
        assert info.versions[1].eval_set == {"name": "r-0001 held-out", "images": 60,
                                             "manifest_sha256": "51ab" * 16}
        assert info.versions[1].benchmark["set"]["name"] == "shapes-test"
        assert info.versions[1].mlflow_run_url == MODELS_BODY["versions"][1]["mlflow_run_url"]
        assert info.versions[0].eval_set is None and info.versions[0].mlflow_run_url is None
        activation = gw.activate("1", poll_s=0.0)
        assert (activation.kind, activation.version, activation.state) == (
            "activate", "1", "succeeded")
        assert gw.models().default_version == "1"
        assert gw.retrain().job_id == "r-0008"
        job = gw.retrain_status("r-0007")
    assert fake.last("POST", "/models/1/activate").headers["X-API-Key"] == "k"
    assert fake.last("POST", "/retrain").headers["X-API-Key"] == "k"
    assert (job.state, job.candidate_version) == ("succeeded", "3")
    assert job.metrics["candidate"] == {"map50": 0.95}


def test_admin_key_goes_to_admin_routes_only() -> None:
    fake = FakeGateway()
    with client_for(fake.handle, api_key="user", admin_key="boss") as gw:
        gw.feedback(b"png", "a.png", "image/png", [])
        gw.retrain()
        gw.activate("1", poll_s=0.0)
        gw.retrain_status("r-0007")
    assert fake.last("POST", "/feedback").headers["X-API-Key"] == "user"
    assert fake.last("POST", "/retrain").headers["X-API-Key"] == "boss"
    assert fake.last("POST", "/models/1/activate").headers["X-API-Key"] == "boss"
    assert "X-API-Key" not in fake.last("GET", "/retrain/r-0007").headers  # a read route
    assert "X-API-Key" not in fake.last("GET", "/jobs/a-0001").headers


def test_activate_answer_must_be_a_job() -> None:
    with client_for(answer(httpx.Response(202, json=["v1"]))) as gw:
        with pytest.raises(GatewayError) as info:
            gw.activate("1")
    assert info.value.code == "invalid_response"


def test_a_failed_activation_raises_with_its_reason() -> None:
    fake = FakeGateway(activation_reason="model_not_ready: 8 of 8 warm-up predictions failed")
    with client_for(fake.handle) as gw, pytest.raises(JobFailed) as info:
        gw.activate("1", poll_s=0.0)
    assert info.value.code == "job_failed" and "warm-up" in info.value.message
    assert fake.models["default_version"] == "2", "the previous version keeps serving"


def test_activate_without_waiting_answers_the_queued_job() -> None:
    fake = FakeGateway()
    with client_for(fake.handle) as gw:
        job = gw.activate("1", wait=False)
        assert (job.job_id, job.state) == ("a-0001", "queued")
        assert gw.job("a-0001").state == "running"
        assert gw.wait_job("a-0001", poll_s=0.0).state == "succeeded"
        assert gw.wait_job("a-0001", timeout_s=0.0).state == "succeeded", "over: no wait"


def test_a_job_that_does_not_end_in_time_is_a_timeout() -> None:
    queued = {"job_id": "a-0001", "kind": "activate", "version": "1", "state": "queued"}
    fake = FakeGateway(fail={("GET", "/jobs/a-0001"): httpx.Response(200, json=queued)})
    with client_for(fake.handle) as gw, pytest.raises(GatewayError) as info:
        gw.activate("1", timeout_s=0.05, poll_s=0.01)
    assert info.value.code == "job_timeout" and "queued" in info.value.message


def test_path_segments_are_quoted() -> None:
    fake = FakeGateway()
    with client_for(fake.handle) as gw, pytest.raises(GatewayError) as info:
        gw.retrain_status("../models")
    assert fake.requests[-1].url.raw_path == b"/retrain/..%2Fmodels"
    assert info.value.code == "not_found"


def test_health_accepts_an_empty_body() -> None:
    with client_for(answer(httpx.Response(200, text="ok"))) as gw:
        assert gw.health() == {}


def test_review_lists_items_and_fetches_their_image() -> None:
    fake = FakeGateway(review=[review_item("rv-1", "novel"), review_item("rv-2")])
    with client_for(fake.handle) as gw:
        queue = gw.review(limit=1)
        image = gw.review_image(queue.items[0].image_url)
    request = fake.last("GET", "/review")
    assert dict(request.url.params) == {"limit": "1"}
    assert "X-API-Key" not in request.headers  # a read route
    assert queue.total == 2
    (item,) = queue.items
    assert (item.review_id, item.reason, item.model_version) == ("rv-1", "novel", "2")
    assert (item.width, item.height, item.priority) == (64, 48, 0.8)
    assert item.request_id == "req-rv-1"
    assert [b.name for b in item.boxes] == ["triangle", "circle"]
    assert image == png_bytes()


def test_dismiss_sends_the_user_key_and_raises_the_gateways_error() -> None:
    fake = FakeGateway(review=[review_item("rv-1")])
    with client_for(fake.handle, api_key="secret", admin_key="admin") as gw:
        gw.dismiss("rv-1")
        with pytest.raises(GatewayError) as info:
            gw.dismiss("rv-1")
    assert fake.last("POST", "/review/rv-1/dismiss").headers["X-API-Key"] == "secret"
    assert (info.value.status, info.value.code) == (404, "unknown_review_item")
    assert fake.review == []


def test_feedback_carries_the_review_id_only_when_given() -> None:
    fake = FakeGateway(review=[review_item("rv-1")])
    with client_for(fake.handle) as gw:
        gw.feedback(b"x", "a.png", "image/png", [], review_id="rv-1")
        first = json.loads(parse_multipart(fake.last("POST", "/feedback"))["labels"][2])
        gw.feedback(b"x", "a.png", "image/png", [])
        second = json.loads(parse_multipart(fake.last("POST", "/feedback"))["labels"][2])
    assert first == {"boxes": [], "review_id": "rv-1"}
    assert second == {"boxes": []}
    assert fake.review == []


def test_a_review_answer_of_the_wrong_shape_is_an_invalid_response() -> None:
    with client_for(answer(httpx.Response(200, json={"items": [{"reason": "x"}]}))) as gw:
        with pytest.raises(GatewayError) as info:
            gw.review()
    assert info.value.code == "invalid_response"
