"""The app's pages through ``AppTest``, against a fake gateway at the HTTP level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from streamlit.testing.v1 import AppTest

from tests.gateway_client.fake_gateway import (
    JOB_BODY,
    FakeGateway,
    error_response,
    parse_multipart,
    png_bytes,
)
from tests.webapp.app_under_test import API_KEY
from tests.webapp.canvas import canvas_args, canvas_key_of, complete
from webapp.views.detect import SOURCE_SAMPLE
from webapp.views.feedback import MAX_MISSED
from webapp.views.session import DETECTION_KEY

MODELS_PAGE = "app_pages/models.py"


def _errors(at: AppTest) -> str:
    """All error boxes of the main area, as one string."""
    return "\n".join(e.value for e in at.main.error)


def _upload_and_detect(at: AppTest, data: bytes | None = None, name: str = "shape.png") -> AppTest:
    at.file_uploader[0].set_value((name, data or png_bytes(), "image/png")).run()
    return at.button(key="detect").click().run()


def test_upload_detect_shows_boxes_table_and_timings(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = make_app()
    assert not at.exception
    at.slider(key="conf").set_value(0.4)
    at = _upload_and_detect(at)

    assert not at.exception and not _errors(at)
    request = gateway.last("POST", "/predict")
    assert request.url.params["conf"] == "0.4"
    assert request.url.params["iou"] == "0.7"
    assert parse_multipart(request)["file"] == ("shape.png", "image/png", png_bytes())
    table = at.dataframe[0].value
    assert list(table["class"]) == ["triangle", "circle"]
    assert list(table["confidence"]) == [0.9699, 0.51]
    assert list(table.loc[0, ["x1", "y1", "x2", "y2"]]) == [10.0, 8.0, 30.0, 28.0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model version"] == "2"
    assert metrics["Gateway time"] == "41.2 ms"
    assert metrics["Round trip"].endswith(" ms")
    assert at.image[0].captions == ["shape.png: 2 box(es)"]  # the picture with its boxes


def test_sample_image_is_sent(
    make_app: Callable[[], AppTest], gateway: FakeGateway, samples_dir: Path
) -> None:
    (samples_dir / "b_shapes.png").write_bytes(png_bytes())
    (samples_dir / "notes.txt").write_text("not an image")
    at = make_app()
    at.radio(key="image_source").set_value(SOURCE_SAMPLE).run()
    assert at.selectbox(key="sample").options == ["b_shapes.png"]
    at.button(key="detect").click().run()

    assert not at.exception and not _errors(at)
    assert parse_multipart(gateway.last("POST", "/predict"))["file"][0] == "b_shapes.png"


def test_no_samples_says_so(make_app: Callable[[], AppTest]) -> None:
    at = make_app()
    at.radio(key="image_source").set_value(SOURCE_SAMPLE).run()
    assert not at.exception
    assert any("No sample images" in i.value for i in at.info)
    assert at.button(key="detect").disabled


def _canvas_key(at: AppTest) -> str:
    return canvas_key_of(at, at.session_state[DETECTION_KEY].key)


def _complete(at: AppTest, boxes: list[dict[str, Any]]) -> AppTest:
    return complete(at, at.session_state[DETECTION_KEY].key, boxes)


def test_the_canvas_starts_from_the_predictions_in_display_pixels(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _upload_and_detect(make_app())
    key = at.session_state[DETECTION_KEY].key
    args = canvas_args(at, key)
    # The 64x48 image is shown 4x larger, so every corner is 4x the gateway's pixels.
    assert args["image_size"] == [256, 192]
    assert args["label_list"] == ["circle", "square", "triangle"]  # GET /models' classes
    assert [(b["bbox"], b["label"]) for b in args["bbox_info"]] == [
        ([40.0, 32.0, 80.0, 80.0], "triangle"),
        ([160.0, 80.0, 80.0, 96.0], "circle"),
    ]
    assert "No edits applied" in "\n".join(c.value for c in at.main.caption)


def test_feedback_sends_the_edited_boxes_in_image_pixels_and_shows_answer(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _upload_and_detect(make_app())
    key = at.session_state[DETECTION_KEY].key
    # Box 1 (triangle) moved by (+2, +2) image pixels and made a square, box 2 (circle)
    # deleted, a missed circle drawn, and one dragged past the bottom-right corner.
    at = _complete(at, [
        {"bbox": [48.0, 40.0, 80.0, 80.0], "label_id": 1, "label": "square"},
        {"bbox": [8.0, 12.0, 40.0, 48.0], "label_id": 0, "label": "circle"},
        {"bbox": [240.0, 160.0, 40.0, 40.0], "label_id": 2, "label": "triangle"},
    ])
    assert "Your edits are applied: 3 label(s)" in "\n".join(c.value for c in at.main.caption)
    at.button(key=f"fb-{key}-send").click().run()

    assert not at.exception and not _errors(at)
    request = gateway.last("POST", "/feedback")
    assert request.headers["X-API-Key"] == API_KEY
    parts = parse_multipart(request)
    assert parts["file"] == ("shape.png", "image/png", png_bytes())
    labels = json.loads(parts["labels"][2])
    assert labels == {
        "request_id": "req-0001",
        "boxes": [
            {"xyxy": [12.0, 10.0, 32.0, 30.0], "name": "square"},
            {"xyxy": [2.0, 3.0, 12.0, 15.0], "name": "circle"},
            {"xyxy": [60.0, 40.0, 64.0, 48.0], "name": "triangle"},  # clipped to 64x48
        ],
    }
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows written"] == "3"
    assert metrics["Production rows in total"] == "148"
    assert metrics["Next retrain at"] == "200 rows"
    assert any("r-0007" in i.value for i in at.info)
    assert at.button(key=f"fb-{key}-send").disabled  # no double send

    # The triggered job is waiting in the Models page's lookup field.
    at.switch_page(MODELS_PAGE).run()
    assert at.text_input(key="job_lookup").value == "r-0007"


def test_feedback_confirms_everything_in_one_click(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _upload_and_detect(make_app())
    key = at.session_state[DETECTION_KEY].key
    at.button(key=f"fb-{key}-send").click().run()

    labels = json.loads(parse_multipart(gateway.last("POST", "/feedback"))["labels"][2])
    assert labels["boxes"] == [
        {"xyxy": [10.0, 8.0, 30.0, 28.0], "name": "triangle"},
        {"xyxy": [40.0, 20.0, 60.0, 44.0], "name": "circle"},
    ]


def test_feedback_with_every_box_deleted_says_nothing_is_there(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _complete(_upload_and_detect(make_app()), [])
    assert "nothing to detect here" in "\n".join(c.value for c in at.main.caption)
    at.button(key=f"fb-{at.session_state[DETECTION_KEY].key}-send").click().run()
    labels = json.loads(parse_multipart(gateway.last("POST", "/feedback"))["labels"][2])
    assert labels["boxes"] == []


def test_start_over_drops_the_edits_and_too_many_boxes_block_sending(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = _upload_and_detect(make_app())
    key = at.session_state[DETECTION_KEY].key
    too_many = 2 + MAX_MISSED + 1
    at = _complete(at, [{"bbox": [0, 0, 8, 8], "label_id": 0, "label": "circle"}] * too_many)
    assert f"{too_many} boxes: at most {too_many - 1}" in _errors(at)
    assert at.button(key=f"fb-{key}-send").disabled
    first = _canvas_key(at)

    at.button(key=f"fb-{key}-reset").click().run()
    assert _canvas_key(at) != first  # a new canvas: predictions
    assert not _errors(at) and not at.button(key=f"fb-{key}-send").disabled
    at.button(key=f"fb-{key}-send").click().run()
    labels = json.loads(parse_multipart(gateway.last("POST", "/feedback"))["labels"][2])
    assert [b["name"] for b in labels["boxes"]] == ["triangle", "circle"]


def test_feedback_error_is_shown(make_app: Callable[[], AppTest], gateway: FakeGateway) -> None:
    gateway.fail[("POST", "/feedback")] = error_response(401, "missing_api_key", "No API key.")
    at = _upload_and_detect(make_app())
    key = at.session_state[DETECTION_KEY].key
    at.button(key=f"fb-{key}-send").click().run()

    assert not at.exception
    errors = _errors(at)
    assert "Feedback was not saved" in errors and "missing_api_key" in errors
    assert "WEBAPP_API_KEY" in errors
    assert not at.button(key=f"fb-{key}-send").disabled  # fixable, so it can be sent again


def test_gateway_down_shows_message_without_exception(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    for route in [("GET", "/health"), ("POST", "/predict"), ("GET", "/models")]:
        gateway.fail[route] = refused
    at = make_app()
    assert any("Gateway not available" in e.value for e in at.sidebar.error)
    at = _upload_and_detect(at)

    assert not at.exception
    errors = _errors(at)
    assert "Detection failed" in errors
    assert "Connection refused" in errors and "gateway_unreachable" in errors
    assert "http://gateway.test:8080" in errors
    assert not at.dataframe  # no stale result

    at.switch_page(MODELS_PAGE).run()
    assert not at.exception
    assert "Cannot list the model versions" in _errors(at)


def test_gateway_error_json_is_shown(make_app: Callable[[], AppTest], gateway: FakeGateway) -> None:
    gateway.fail[("POST", "/predict")] = error_response(
        415, "unsupported_media_type", "The file is not a JPEG, PNG, WebP or BMP image."
    )
    at = _upload_and_detect(make_app(), data=b"definitely not a png", name="broken.png")

    assert not at.exception
    assert any("cannot be previewed" in w.value for w in at.warning)
    errors = _errors(at)
    assert "unsupported_media_type" in errors and "HTTP 415" in errors
    assert "not a JPEG, PNG, WebP or BMP image" in errors
    assert "req-err" in errors


def test_models_page_lists_versions_and_activates(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    at = make_app()
    at.switch_page(MODELS_PAGE).run()
    assert not at.exception and not _errors(at)
    table = at.dataframe[0].value
    assert list(table["version"]) == ["1", "2"]
    assert list(table["map50"]) == [0.842, 0.94]
    assert list(table["map50_95"]) == [0.73, 0.77]
    assert list(table["serving"]) == ["", "default"]
    assert list(table["parent"]) == ["", "1"]
    assert list(table["trained_on.feedback_images"]) == [0, 40]
    # Each number names its set; the benchmark columns line versions up on the same images.
    assert list(table["eval set"]) == ["", f"r-0001 held-out · 60 images · {'51ab' * 2}"]
    assert list(table["benchmark map50"].fillna(-1)) == [-1, 0.971]
    assert list(table["benchmark set"])[1] == f"shapes-test · 150 images · {'9f2c' * 2}"
    assert list(table["MLflow run"]) == [None, "http://mlflow.test:8083/#/experiments/1/runs/abc"]
    assert at.button(key="activate-2").disabled
    assert at.get("link_button")[0].proto.url == "http://evidently.test:8082"

    at.button(key="activate-1").click().run()
    assert gateway.last("POST", "/models/1/activate").headers["X-API-Key"] == API_KEY
    assert any("Version 1 is now the default" in s.value for s in at.success)
    assert list(at.dataframe[0].value["serving"]) == ["default", ""]


def test_retrain_and_job_lookup(make_app: Callable[[], AppTest], gateway: FakeGateway) -> None:
    gateway.fail[("POST", "/retrain")] = error_response(
        409, "retrain_running", "A retrain is already running (r-0007)."
    )
    at = make_app()
    at.switch_page(MODELS_PAGE).run()
    at.button(key="retrain").click().run()
    assert "retrain_running" in _errors(at) and "HTTP 409" in _errors(at)

    del gateway.fail[("POST", "/retrain")]
    at.button(key="retrain").click().run()
    assert gateway.last("POST", "/retrain").headers["X-API-Key"] == API_KEY
    assert at.text_input(key="job_lookup").value == "r-0008"

    at.text_input(key="job_lookup").set_value("r-0007")
    at.button(key="job_check").click().run()
    assert not _errors(at)
    assert any("succeeded" in m.value for m in at.markdown)
    assert list(at.dataframe[-1].value["candidate"]) == [0.95]

    at.text_input(key="job_lookup").set_value("r-9999")
    at.button(key="job_check").click().run()
    assert "unknown_job" in _errors(at)


def test_a_running_job_shows_a_progress_bar_until_it_ends(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    running = {**JOB_BODY, "job_id": "r-0009", "state": "running", "finished_at": None,
               "candidate_version": None, "metrics": {}, "reason": None,
               "progress": {"phase": "training", "epoch": 3, "epochs": 8, "eta_s": 95}}
    gateway.fail[("GET", "/retrain/r-0009")] = httpx.Response(200, json=running)
    at = make_app()
    at.switch_page(MODELS_PAGE).run()
    at.text_input(key="job_lookup").set_value("r-0009")
    at.button(key="job_check").click().run()

    assert not at.exception and not _errors(at)
    (bar,) = at.get("progress")
    assert bar.proto.value == 35  # 5 % dataset + 3/8 of training's 80 %
    assert bar.proto.text == "training: epoch 3 of 8, about 1 min 35 s left"
    assert any("running" in m.value for m in at.markdown)
    # The job's part of the page reads it again by itself (lookup, then the follow-up read).
    reads = [r for r in gateway.requests if r.url.path == "/retrain/r-0009"]
    assert len(reads) == 2

    done = {**running, "state": "succeeded", "finished_at": "2026-11-22T11:06:00Z",
            "reason": "v3 serves", "progress": {"phase": "swapping"}}
    gateway.fail[("GET", "/retrain/r-0009")] = httpx.Response(200, json=done)
    at.run()
    assert not at.exception
    assert at.get("progress") == []  # over: no bar, the final state instead
    assert any("succeeded" in m.value for m in at.markdown)


def test_a_job_that_cannot_be_refreshed_keeps_its_last_state(
    make_app: Callable[[], AppTest], gateway: FakeGateway
) -> None:
    running = {"job_id": "r-0009", "state": "running",
               "progress": {"phase": "evaluating"}}
    gateway.fail[("GET", "/retrain/r-0009")] = httpx.Response(200, json=running)
    at = make_app()
    at.switch_page(MODELS_PAGE).run()
    at.text_input(key="job_lookup").set_value("r-0009")
    at.button(key="job_check").click().run()
    gateway.fail[("GET", "/retrain/r-0009")] = error_response(
        503, "model_server_unavailable", "restarting")
    at.run()
    assert not at.exception
    assert any("Cannot refresh job r-0009" in w.value for w in at.warning)
    (bar,) = at.get("progress")
    assert bar.proto.text == "evaluating"
