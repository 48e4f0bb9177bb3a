"""Real TorchServe + real gateway: a prediction near the threshold enters the review queue with
its image, survives a gateway restart, and feedback naming it closes it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.integration.conftest import USER_KEY, Stack, start_gateway, stop_gateway
from yoloserve import paths

pytestmark = pytest.mark.integration

# The shipped model finds a box of confidence ~0.34 here: inside the default band 0.25 +- 0.15.
SAMPLE = paths.ROOT / "data" / "samples" / "shapes_4.jpg"


def _item_of(gateway: httpx.Client, request_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = gateway.get("/review", params={"limit": 100}).json()["items"]
        found = [item for item in items if item["request_id"] == request_id]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"prediction {request_id} never reached the review queue")


def test_sampled_item_survives_a_restart_and_feedback_closes_it(
    stack: Stack, gateway: httpx.Client
) -> None:
    data = SAMPLE.read_bytes()
    predicted = gateway.post("/predict", files={"file": (SAMPLE.name, data, "image/jpeg")})
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    item = _item_of(gateway, body["request_id"])
    assert item["reason"] == "uncertain"
    assert item["boxes"] == body["boxes"]
    assert any(abs(box["conf"] - 0.25) <= 0.15 for box in item["boxes"])
    assert item["model_version"] == body["model"]["version"]
    # The item is a row of the store; its image a file on the data volume.
    assert (stack.data_dir / "review" / "images" / f"{item['review_id']}.jpeg").is_file()

    stop_gateway(stack)
    start_gateway(stack)
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as restarted:
        assert _item_of(restarted, body["request_id"]) == item
        image = restarted.get(item["image_url"])
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/jpeg" and image.content == data
        depth = [line for line in restarted.get("/metrics").text.splitlines()
                 if line.startswith("gateway_review_queue_depth ")]
        assert depth and float(depth[0].split()[1]) >= 1

        labels = {"request_id": item["request_id"], "review_id": item["review_id"],
                  "boxes": [{"xyxy": box["xyxy"], "name": box["name"]} for box in item["boxes"]]}
        answer = restarted.post(
            "/feedback", files={"file": (SAMPLE.name, data, "image/jpeg")},
            data={"labels": json.dumps(labels)}, headers={"X-API-Key": USER_KEY},
        )
        assert answer.status_code == 201, answer.text
        # The same feedback again is a retry: its first answer, nothing stored twice.
        retry = restarted.post(
            "/feedback", files={"file": (SAMPLE.name, data, "image/jpeg")},
            data={"labels": json.dumps(labels)}, headers={"X-API-Key": USER_KEY},
        )
        assert retry.status_code == 201 and retry.json() == answer.json()
        assert retry.headers["Idempotent-Replayed"] == "true"
        # Another correction of the closed item is refused.
        other = {**labels, "boxes": labels["boxes"][:-1] or [{"xyxy": [1, 1, 9, 9],
                                                               "name": "circle"}]}
        again = restarted.post(
            "/feedback", files={"file": (SAMPLE.name, data, "image/jpeg")},
            data={"labels": json.dumps(other)}, headers={"X-API-Key": USER_KEY},
        )
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "review_item_closed"
        ids = {i["review_id"] for i in restarted.get("/review?limit=100").json()["items"]}
        assert item["review_id"] not in ids
