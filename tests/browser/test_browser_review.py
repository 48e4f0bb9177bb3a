"""A labeller in real Chromium: a prediction lands in the review queue, the Review page shows it,
the labeller sends the boxes, and the item is gone from the queue.

Everything is real, as in ``test_browser_e2e.py`` (whose browser helpers this reuses): the
gateway samples the prediction in its background task, the web app reads ``GET /review`` and
the stored image, and the feedback closes the item. ``shapes_4.jpg`` has a box of confidence
~0.34 under the shipped model, inside the default "uncertain" band (0.25 +- 0.15).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_browser_e2e import TIMEOUT_MS, Page, expect, page, prod_rows, settle
from tests.integration.conftest import Stack
from yoloserve import paths

pytestmark = [pytest.mark.browser, pytest.mark.integration]

__all__ = ["page"]  # the module-scoped browser page fixture, shared with the Detect test

UNCERTAIN_SAMPLE = paths.ROOT / "data" / "samples" / "shapes_4.jpg"


def _queue(stack: Stack) -> dict[str, Any]:
    answer = httpx.get(f"{stack.gateway_url}/review", params={"limit": 100}, timeout=30)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _wait_for_item(stack: Stack, request_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The queue item of ``request_id`` (sampled after the answer, so it may take a moment)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for item in _queue(stack)["items"]:
            if item["request_id"] == request_id:
                return item
        time.sleep(0.2)
    raise AssertionError(f"prediction {request_id} never reached the review queue")


def test_review_page_labels_a_sampled_prediction(
    page: Page, webapp_url: str, stack: Stack, artifacts: Path
) -> None:
    # Production traffic: a client of POST /predict, nobody labels it.
    with UNCERTAIN_SAMPLE.open("rb") as image:
        predicted = httpx.post(
            f"{stack.gateway_url}/predict", files={"file": (UNCERTAIN_SAMPLE.name, image)},
            timeout=60,
        )
    assert predicted.status_code == 200, predicted.text
    request_id = predicted.json()["request_id"]
    _wait_for_item(stack, request_id)
    # The page shows the queue's first item: other tests' traffic may have put one above ours.
    shown = _queue(stack)["items"][0]
    open_before = _queue(stack)["total"]
    rows_before = len(prod_rows(stack))

    page.goto(f"{webapp_url}/review")
    page.get_by_role("heading", name="Review queue").wait_for()
    settle(page)
    expect(page.get_by_text(f"item {shown['review_id']}")).to_be_visible()
    open_metric = page.locator("[data-testid='stMetric']").filter(has_text="Open items")
    expect(open_metric.locator("[data-testid='stMetricValue']")).to_have_text(str(open_before))
    expect(page.get_by_text(f"{len(shown['boxes'])} predicted box(es)")).to_be_visible()
    page.screenshot(path=str(artifacts / "browser_review_1_item.png"), full_page=True)

    # Confirm every box as predicted and send: a few clicks.
    page.get_by_role("button", name="Send feedback").click()
    done = page.get_by_text(re.compile(rf"Item {shown['review_id']} labelled: \d+ row\(s\)"))
    done.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    page.screenshot(path=str(artifacts / "browser_review_2_labelled.png"), full_page=True)

    queue = _queue(stack)
    assert shown["review_id"] not in {item["review_id"] for item in queue["items"]}
    assert queue["total"] == open_before - 1
    closed = httpx.get(f"{stack.gateway_url}{shown['image_url']}", timeout=30)
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "review_item_closed"
    # The feedback rows link to the sampled prediction.
    mine = prod_rows(stack)[rows_before:]
    assert mine and {row["request_id"] for row in mine} == {shown["request_id"]}
    # What the page shows now: the next item, or the empty queue.
    if queue["total"] == 0:
        expect(page.get_by_text("Nothing to review")).to_be_visible()
    else:
        expect(page.get_by_text(f"item {queue['items'][0]['review_id']}")).to_be_visible()
