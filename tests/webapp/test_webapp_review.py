"""The Review page through ``AppTest``, against the fake gateway's review queue."""

from __future__ import annotations

import json
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from tests.gateway_client.fake_gateway import (
    FakeGateway,
    error_response,
    parse_multipart,
    png_bytes,
    review_item,
)
from tests.webapp.app_under_test import API_KEY
from tests.webapp.canvas import canvas_args, complete

REVIEW_PAGE = "app_pages/review.py"


def _open_review(make_app: Callable[[], AppTest]) -> AppTest:
    at = make_app()
    return at.switch_page(REVIEW_PAGE).run()


def _text(at: AppTest) -> str:
    parts = [*at.main.info, *at.main.success, *at.main.error, *at.main.caption]
    return "\n".join(part.value for part in parts)


def test_an_empty_queue_says_how_it_fills(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _open_review(make_app)
    assert not at.exception
    assert "Nothing to review" in _text(at)
    assert gateway.last("GET", "/review").url.params["limit"] == "1"


def test_the_next_item_is_shown_with_its_boxes_and_reason(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    gateway.review = [review_item("rv-1", "novel"), review_item("rv-2")]
    at = _open_review(make_app)

    assert not at.exception and not at.main.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Open items": "2", "Reason": "novel", "Model version": "2"}
    assert "unlike anything in the training data" in _text(at)
    assert at.image[0].captions == ["2 predicted box(es)"]
    gateway.last("GET", "/review/rv-1/image")
    # The Detect page's annotation canvas, starting from the item's boxes.
    args = canvas_args(at, "rv-1")
    assert [b["label"] for b in args["bbox_info"]] == ["triangle", "circle"]


def test_correcting_and_sending_closes_the_item_and_shows_the_next(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    gateway.review = [review_item("rv-1"), review_item("rv-2")]
    at = _open_review(make_app)
    # Box 1 made a square, box 2 deleted (the 64x48 image is drawn 4x larger).
    at = complete(at, "rv-1", [{"bbox": [40, 32, 80, 80], "label_id": 1, "label": "square"}])
    at.button(key="fb-rv-1-send").click().run()

    assert not at.exception and not at.main.error
    request = gateway.last("POST", "/feedback")
    assert request.headers["X-API-Key"] == API_KEY
    parts = parse_multipart(request)
    assert parts["file"] == ("rv-1.png", "image/png", png_bytes())
    assert json.loads(parts["labels"][2]) == {
        "request_id": "req-rv-1",
        "review_id": "rv-1",
        "boxes": [{"xyxy": [10.0, 8.0, 30.0, 28.0], "name": "square"}],
    }
    assert [item["review_id"] for item in gateway.review] == ["rv-2"]
    assert "Item `rv-1` labelled: 3 row(s) written" in _text(at)
    assert {m.label: m.value for m in at.metric}["Open items"] == "1"
    assert canvas_args(at, "rv-2")["bbox_info"]  # the next item is up, on a fresh canvas


def test_dismiss_drops_the_item(make_app: Callable[[], AppTest], gateway: FakeGateway) -> None:
    gateway.review = [review_item("rv-1")]
    at = _open_review(make_app)
    at.button(key="review-dismiss-rv-1").click().run()

    assert not at.exception
    assert gateway.last("POST", "/review/rv-1/dismiss").headers["X-API-Key"] == API_KEY
    text = _text(at)
    assert "Item `rv-1` dismissed" in text and "Nothing to review" in text


def test_a_failed_dismiss_is_shown_and_the_item_stays(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    gateway.review = [review_item("rv-1")]
    gateway.fail[("POST", "/review/rv-1/dismiss")] = error_response(
        409, "review_item_closed", "review item 'rv-1' is already closed"
    )
    at = _open_review(make_app)
    at.button(key="review-dismiss-rv-1").click().run()

    assert not at.exception
    errors = "\n".join(e.value for e in at.main.error)
    assert "The item was not dismissed" in errors and "review_item_closed" in errors
    assert at.button(key="review-dismiss-rv-1")  # still shown


def test_an_unreachable_queue_is_a_message_not_a_traceback(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    gateway.fail[("GET", "/review")] = error_response(503, "model_not_ready", "not yet")
    at = _open_review(make_app)
    assert not at.exception
    assert "Cannot load the review queue" in "\n".join(e.value for e in at.main.error)


def test_the_empty_page_fills_when_items_arrive(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _open_review(make_app)
    assert "Nothing to review" in _text(at)
    gateway.review = [review_item("rv-9", "rare")]
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Reason"] == "rare"
    assert "Nothing to review" not in _text(at)
