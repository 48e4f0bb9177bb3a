"""``scripts.scenario.feedback``: what the scenario sends through ``gateway_client``.

The gateway is faked at the HTTP level (``tests/gateway_client/fake_gateway.py``): the
scenario's own code and the shared client run unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from gateway_client import GatewayClient, GatewayUnreachable
from scripts.scenario.errors import ScenarioError, calling
from scripts.scenario.feedback import (
    connect,
    send_feedback,
    start_retrain,
    wait_for_default,
    wait_for_job,
)
from tests.gateway_client.fake_gateway import BASE, FEEDBACK_BODY, FakeGateway, parse_multipart


def _images(root: Path, n: int) -> list[Path]:
    """``n`` generated-looking images (64x48 JPEG) with one circle each in the YOLO label."""
    (root / "images" / "prod").mkdir(parents=True)
    (root / "labels" / "prod").mkdir(parents=True)
    paths = []
    for i in range(n):
        image = root / "images" / "prod" / f"{i:03d}.jpg"
        Image.new("RGB", (64, 48), (90, 90, 90)).save(image, format="JPEG")
        (root / "labels" / "prod" / f"{i:03d}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
        paths.append(image)
    return paths


def _client(fake: FakeGateway, admin_key: str | None = "boss") -> GatewayClient:
    return GatewayClient(
        BASE, api_key="user", admin_key=admin_key, transport=httpx.MockTransport(fake.handle)
    )


def test_each_image_is_predicted_then_labelled(tmp_path: Path) -> None:
    fake = FakeGateway()
    images = _images(tmp_path, 2)
    with _client(fake) as gw:
        sent = send_feedback(gw, images, stop_on_trigger=False, label="test")
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", "/predict"), ("POST", "/feedback")
    ] * 2
    request = fake.last("POST", "/feedback")
    assert request.headers["X-API-Key"] == "user"
    parts = parse_multipart(request)
    assert parts["file"] == ("001.jpg", "image/jpeg", images[1].read_bytes())
    assert json.loads(parts["labels"][2]) == {
        "request_id": "req-0001",
        "boxes": [{"xyxy": [24.0, 12.0, 40.0, 36.0], "name": "circle"}],
    }
    assert (sent.images, sent.rows, sent.boxes_predicted) == (2, 6, 4)
    assert sent.versions == {"2": 2}
    assert (sent.job_id, sent.prod_rows_total, sent.next_at_rows) == ("r-0007", 148, 200)
    assert sent.as_dict()["versions"] == {"2": 2}


def test_stops_after_the_feedback_that_triggers(tmp_path: Path) -> None:
    fake = FakeGateway()
    with _client(fake) as gw:
        sent = send_feedback(gw, _images(tmp_path, 3), stop_on_trigger=True, label="test")
    assert sent.images == 1 and sent.job_id == FEEDBACK_BODY["retrain"]["job_id"]


def test_stops_before_a_feedback_that_could_reach_the_next_trigger(tmp_path: Path) -> None:
    fake = FakeGateway()
    with _client(fake) as gw:
        # 1 true box + 2 predicted ones could write 3 rows: 148 + 3 reaches 150.
        sent = send_feedback(
            gw, _images(tmp_path, 2), stop_on_trigger=False, label="test",
            avoid_trigger_from=(148, 150),
        )
    assert sent.images == 0
    assert [r.url.path for r in fake.requests] == ["/predict"]


def test_retrain_needs_the_admin_key() -> None:
    fake = FakeGateway()
    with _client(fake, admin_key=None) as gw, pytest.raises(ScenarioError, match="admin key"):
        start_retrain(gw, None)
    with _client(fake) as gw:
        assert start_retrain(gw, "boss") == "r-0008"
    assert fake.last("POST", "/retrain").headers["X-API-Key"] == "boss"


def test_waits_for_the_job_and_the_swap() -> None:
    fake = FakeGateway()
    with _client(fake) as gw:
        job = wait_for_job(gw, "r-0007", timeout=5, poll=0)
        assert (job.state, job.candidate_version) == ("succeeded", "3")
        wait_for_default(gw, "2", timeout=5, poll=0)
        with pytest.raises(ScenarioError, match="not the default"):
            wait_for_default(gw, "9", timeout=0, poll=0)


def test_a_refused_call_names_the_route() -> None:
    fake = FakeGateway()
    with _client(fake) as gw, pytest.raises(ScenarioError, match=r"GET /retrain/r-9999: .*404"):
        wait_for_job(gw, "r-9999", timeout=5, poll=0)


def test_no_answer_says_to_start_the_platform() -> None:
    with pytest.raises(ScenarioError, match=r"GET /models: .*make demo"):
        with calling("GET /models"):
            raise GatewayUnreachable(None, "gateway_unreachable", "Cannot reach the gateway.")


def test_connect_waits_long_enough_for_a_busy_cpu() -> None:
    with connect("http://127.0.0.1:1/", "user", None) as gw:
        assert gw.base_url == "http://127.0.0.1:1"
        request = gw._http.build_request("GET", "/models")
        assert request.extensions["timeout"] == dict.fromkeys(
            ("connect", "read", "write", "pool"), 60.0
        )
