"""A labeller in real Chromium: the Review page fills by itself as a prediction lands in the
review queue, the labeller sends the boxes, and the item is gone from the queue and the page.

Everything is real, as in ``test_browser_e2e.py`` (whose browser helpers this reuses): the
gateway samples the prediction in its background task, the web app reads ``GET /review`` and
the stored image, and the feedback closes the item. ``shapes_4.jpg`` has a box of confidence
~0.34 under the shipped model, inside the default "uncertain" band (0.25 +- 0.15).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.test_browser_e2e import prod_rows, settle
from tests.integration.conftest import USER_KEY, Stack
from webapp.views.review import EMPTY_REFRESH_S
from yoloserve import paths

pytestmark = [pytest.mark.browser, pytest.mark.integration]

UNCERTAIN_SAMPLE = paths.ROOT / "data" / "samples" / "shapes_4.jpg"


def _queue(stack: Stack) -> dict[str, Any]:
    answer = httpx.get(f"{stack.gateway_url}/review", params={"limit": 100}, timeout=30)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _empty_the_queue(stack: Stack) -> None:
    """Other tests' traffic may have left items: the page must start from an empty queue."""
    for item in _queue(stack)["items"]:
        httpx.post(
            f"{stack.gateway_url}/review/{item['review_id']}/dismiss",
            headers={"X-API-Key": USER_KEY}, timeout=30,
        ).raise_for_status()
    assert _queue(stack)["total"] == 0


def test_review_page_fills_with_a_prediction_and_empties_once_labelled(
    page: Page, webapp_url: str, stack: Stack, artifacts: Path
) -> None:
    _empty_the_queue(stack)
    page.goto(f"{webapp_url}/review")
    page.get_by_role("heading", name="Review queue").wait_for()
    expect(page.get_by_text("Nothing to review")).to_be_visible()

    # Production traffic: a client of POST /predict, nobody labels it. No click on the page:
    # it looks at the empty queue again every few seconds.
    with UNCERTAIN_SAMPLE.open("rb") as image:
        predicted = httpx.post(
            f"{stack.gateway_url}/predict", files={"file": (UNCERTAIN_SAMPLE.name, image)},
            timeout=60,
        )
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    caption = page.get_by_text(re.compile(r"· item rv-[0-9a-f]+"))
    caption.wait_for(timeout=TIMEOUT_MS + int(EMPTY_REFRESH_S * 1000))
    settle(page)
    (item,) = _queue(stack)["items"]
    assert item["request_id"] == body["request_id"]
    expect(caption).to_contain_text(item["review_id"])
    open_metric = page.locator("[data-testid='stMetric']").filter(has_text="Open items")
    expect(open_metric.locator("[data-testid='stMetricValue']")).to_have_text("1")
    expect(page.get_by_text(f"{len(body['boxes'])} predicted box(es)")).to_be_visible()
    page.screenshot(path=str(artifacts / "browser_review_1_item.png"), full_page=True)

    # Confirm every box as predicted and send: one click.
    rows_before = len(prod_rows(stack))
    page.get_by_role("button", name="Send feedback").click()
    done = page.get_by_text(re.compile(rf"Item {item['review_id']} labelled: \d+ row\(s\)"))
    done.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    expect(page.get_by_text("Nothing to review")).to_be_visible()
    page.screenshot(path=str(artifacts / "browser_review_2_labelled.png"), full_page=True)

    assert _queue(stack) == {"items": [], "total": 0}
    closed = httpx.get(f"{stack.gateway_url}{item['image_url']}", timeout=30)
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "review_item_closed"
    # The feedback rows link to the sampled prediction, one per predicted box confirmed.
    mine = prod_rows(stack)[rows_before:]
    assert len(mine) == len(body["boxes"])
    assert {row["request_id"] for row in mine} == {body["request_id"]}
