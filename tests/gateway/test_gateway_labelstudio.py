"""``/labelstudio/*`` (the Label Studio ML backend) over a scripted TorchServe and Label Studio.

Request bodies are the shapes Label Studio 1.x sends (``ml/api_connector.py``: predict, setup;
``webhooks``: annotation events). Label Studio's image host is faked on the same
``httpx.MockTransport`` as TorchServe: the network is faked, not the code.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.embeddings import EmbeddingBackend
from gateway.labelstudio.settings import LabelStudioSettings
from gateway.main import create_app
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error, encode_image
from tests.gateway.test_gateway_feedback import read_rows, seed_registry
from yoloserve.labelstudio import labeling_config
from yoloserve.retrain.settings import RetrainSettings

LS = "http://ls.test:8080"
UPLOAD = "/data/upload/1/abc-shapes.png"
CONFIG = labeling_config(["circle", "square", "triangle"])
IMAGE = encode_image("PNG")  # 64 x 48, as the fake handler's answer says


class FakeLabelStudio:
    """Serves ``UPLOAD`` to a request with the right token (and any image of the host
    ``photos.test``); records what was asked."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "photos.test":  # another image host, open to all
            return httpx.Response(200, content=IMAGE)
        if request.headers.get("Authorization") != "Token ls-token":
            return httpx.Response(401, json={"detail": "no token"})
        if request.url.path != UPLOAD or self.status != 200:
            return httpx.Response(self.status if self.status != 200 else 404)
        return httpx.Response(200, content=IMAGE, headers={"Content-Type": "image/png"})


@pytest.fixture
def fake_ls() -> FakeLabelStudio:
    return FakeLabelStudio()


@pytest.fixture
def make_client(
    settings: Settings, fake_ts: FakeTorchServe, fake_ls: FakeLabelStudio,
    fake_embedder_loader: Callable[[], EmbeddingBackend],
) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        def route(request: httpx.Request) -> httpx.Response:
            return (fake_ls(request) if request.url.host in ("ls.test", "photos.test")
                    else fake_ts(request))

        overrides.setdefault("labelstudio", LabelStudioSettings(url=LS, api_key="ls-token"))
        app = create_app(settings.model_copy(update=overrides),
                         transport=httpx.MockTransport(route),
                         embedder_loader=fake_embedder_loader,
                         retrain_settings=RetrainSettings())
        client = TestClient(app).__enter__()
        clients.append(client)
        return client

    seed_registry(settings.store.url)
    yield make
    for client in clients:
        client.__exit__(None, None, None)


def predict_body(image: str = UPLOAD, config: str = CONFIG, n: int = 1) -> dict[str, Any]:
    tasks = [{"id": 7 + i, "data": {"image": image}, "annotations": [], "predictions": []}
             for i in range(n)]
    return {"tasks": tasks, "project": "1.1700000000", "label_config": config,
            "params": {"login": None, "password": None, "context": None}}


def rect(x: float, y: float, w: float, h: float, name: str) -> dict[str, Any]:
    return {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 64, "original_height": 48, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                      "rectanglelabels": [name]}}


def event(result: list[dict[str, Any]], *, annotation_id: int = 11, updated_at: str = "t1",
          action: str = "ANNOTATION_CREATED") -> dict[str, Any]:
    return {"action": action,
            "annotation": {"id": annotation_id, "result": result, "updated_at": updated_at,
                           "was_cancelled": False, "task": 7, "project": 1},
            "task": {"id": 7, "data": {"image": UPLOAD}, "project": 1},
            "project": {"id": 1, "title": "p", "label_config": CONFIG}}


def test_health_answers_up(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for path in ("/labelstudio/health", "/labelstudio/"):
        assert client.get(path).json()["status"] == "UP"


@pytest.mark.parametrize(
    ("config", "status", "code"),
    [
        (CONFIG, 200, None),
        (labeling_config(["circle"]), 200, None),
        (labeling_config(["circle", "hexagon"]), 400, "unknown_class"),
        ("<View><Image name='image' value='$image'/></View>", 400, "invalid_task"),
        ("<View", 400, "invalid_task"),
    ],
)
def test_setup_checks_the_config_against_the_classes(
    make_client: Callable[..., TestClient], config: str, status: int, code: str | None
) -> None:
    response = make_client().post("/labelstudio/setup", json={
        "project": "1.1700000000", "schema": config, "hostname": LS, "access_token": "x",
        "extra_params": None})
    if code is None:
        assert response.status_code == 200, response.text
        assert response.json() == {"model_version": "3"}
    else:
        error = assert_error(response, status, code)
        assert "hexagon" in error["message"] or "RectangleLabels" in error["message"] \
            or "XML" in error["message"]


def test_predict_answers_rectangles_in_percent(
    make_client: Callable[..., TestClient], fake_ls: FakeLabelStudio
) -> None:
    response = make_client().post("/labelstudio/predict", json=predict_body())

    assert response.status_code == 200, response.text
    (prediction,) = response.json()["results"]
    assert prediction["model_version"] == "3"
    regions = prediction["result"]
    # The fake handler's boxes, by confidence: triangle [10,5,50,45] first.
    assert [r["value"]["rectanglelabels"] for r in regions] == [["triangle"], ["circle"],
                                                                 ["square"]]
    first = regions[0]
    assert (first["from_name"], first["to_name"], first["type"]) == ("label", "image",
                                                                     "rectanglelabels")
    assert (first["original_width"], first["original_height"]) == (64, 48)
    value = first["value"]
    assert [value[k] for k in ("x", "y", "width", "height")] == pytest.approx(
        [100 * 10 / 64, 100 * 5 / 48, 100 * 40 / 64, 100 * 40 / 48])
    assert first["score"] == pytest.approx(0.97)
    assert prediction["score"] == pytest.approx((0.97 + 0.74 + 0.51) / 3)
    # Label Studio's image, fetched with its token.
    assert [str(r.url) for r in fake_ls.requests] == [LS + UPLOAD]


def test_predict_leaves_out_classes_the_project_does_not_label(
    make_client: Callable[..., TestClient]
) -> None:
    config = labeling_config(["square"], from_name="box", to_name="img", value_key="photo")
    body = predict_body(config=config)
    body["tasks"][0]["data"] = {"photo": UPLOAD}
    (prediction,) = make_client().post("/labelstudio/predict", json=body).json()["results"]
    assert [(r["from_name"], r["to_name"], r["value"]["rectanglelabels"])
            for r in prediction["result"]] == [("box", "img", ["square"])]


def test_predict_reads_data_uris_without_label_studio(
    make_client: Callable[..., TestClient], fake_ls: FakeLabelStudio
) -> None:
    uri = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    client = make_client(labelstudio=LabelStudioSettings())
    response = client.post("/labelstudio/predict", json=predict_body(image=uri, n=2))
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 2
    assert fake_ls.requests == []


@pytest.mark.parametrize(
    ("image", "ls_settings", "ls_status", "status", "code"),
    [
        ("http://elsewhere.test/a.png", None, 200, 400, "invalid_task"),  # no open proxy
        ("s3://bucket/a.png", None, 200, 400, "invalid_task"),
        (UPLOAD, LabelStudioSettings(), 200, 400, "invalid_task"),  # no LABELSTUDIO_URL
        (UPLOAD, LabelStudioSettings(url=LS, api_key="wrong"), 200, 502,
         "task_image_unavailable"),
        (UPLOAD, None, 404, 502, "task_image_unavailable"),
        ("data:image/png;base64,@@@", None, 200, 400, "invalid_task"),
        ("data:text/plain,hello", None, 200, 415, "invalid_image"),
    ],
)
def test_predict_refuses_images_it_cannot_use(
    make_client: Callable[..., TestClient], fake_ls: FakeLabelStudio, image: str,
    ls_settings: LabelStudioSettings | None, ls_status: int, status: int, code: str,
) -> None:
    fake_ls.status = ls_status
    client = make_client(**({"labelstudio": ls_settings} if ls_settings is not None else {}))
    assert_error(client.post("/labelstudio/predict", json=predict_body(image=image)), status, code)


def test_predict_fetches_from_an_allowed_origin_without_the_token(
    make_client: Callable[..., TestClient], fake_ls: FakeLabelStudio
) -> None:
    client = make_client(labelstudio=LabelStudioSettings(
        url=LS, api_key="ls-token", image_origins="http://Photos.test/"))
    for image in ("http://photos.test/a.png", LS.upper().replace("HTTP", "http") + UPLOAD):
        response = client.post("/labelstudio/predict", json=predict_body(image=image))
        assert response.status_code == 200, response.text
    # Label Studio's token goes to Label Studio only.
    assert "Authorization" not in fake_ls.requests[0].headers
    assert fake_ls.requests[1].headers["Authorization"] == "Token ls-token"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"tasks": [], "label_config": ""}, 422, "validation_error"),
        ({"label_config": CONFIG}, 422, "validation_error"),
        (predict_body(config="<View/>"), 400, "invalid_task"),
        ({**predict_body(), "tasks": [{"id": 1, "data": {"text": "x"}}]}, 400, "invalid_task"),
        (predict_body(n=33), 400, "invalid_task"),  # LABELSTUDIO_MAX_TASKS
    ],
)
def test_predict_refuses_bad_requests(
    make_client: Callable[..., TestClient], body: dict[str, Any], status: int, code: str
) -> None:
    assert_error(make_client().post("/labelstudio/predict", json=body), status, code)


def test_webhook_records_an_annotation_once_per_version(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client()
    # The triangle the fake handler finds at [10, 5, 50, 45], relabelled as a square.
    corrected = event([rect(100 * 10 / 64, 100 * 5 / 48, 100 * 40 / 64, 100 * 40 / 48,
                            "square")])

    first = client.post("/labelstudio/webhook", json=corrected)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "recorded"
    assert first.json()["feedback"]["rows_written"] == 3
    assert first.headers["X-Model-Version"] == "3"
    rows = read_rows(settings.data_dir)
    assert [(r["target"], r["prediction"]) for r in rows][0] == ("square", "triangle")

    again = client.post("/labelstudio/webhook", json=corrected)
    assert again.json()["status"] == "replayed"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["feedback"] == first.json()["feedback"]
    assert len(read_rows(settings.data_dir)) == 3

    updated = event([rect(100 * 10 / 64, 100 * 5 / 48, 100 * 40 / 64, 100 * 40 / 48,
                          "triangle")], updated_at="t2", action="ANNOTATION_UPDATED")
    third = client.post("/labelstudio/webhook", json=updated)
    assert third.json()["status"] == "recorded"
    assert third.json()["feedback"]["feedback_id"] != first.json()["feedback"]["feedback_id"]
    assert len(read_rows(settings.data_dir)) == 6


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (event([rect(10, 10, 20, 20, "hexagon")]), 400, "unknown_class"),
        (event([rect(10, 10, 0, 20, "circle")]), 400, "invalid_task"),  # no width
        (event([{**rect(10, 10, 20, 20, "circle"), "value": {"x": 1}}]), 400, "invalid_task"),
        (event([{**rect(10, 10, 20, 20, "circle"),
                 "value": {"x": 1, "y": 1, "width": 2, "height": 2,
                           "rectanglelabels": ["circle", "square"]}}]), 400, "invalid_task"),
        ({"action": "ANNOTATION_CREATED", "project": {"id": 1}}, 400, "invalid_task"),
        ({"annotation": {"id": 1}}, 422, "validation_error"),
    ],
)
def test_webhook_refuses_bad_events(
    make_client: Callable[..., TestClient], settings: Settings, body: dict[str, Any],
    status: int, code: str,
) -> None:
    assert_error(make_client().post("/labelstudio/webhook", json=body), status, code)
    assert read_rows(settings.data_dir) == []


def test_webhook_ignores_other_events_and_skipped_tasks(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client()
    skipped = event([])
    skipped["annotation"]["was_cancelled"] = True
    for body in ({"action": "PROJECT_UPDATED", "project": {"id": 1}}, skipped):
        response = client.post("/labelstudio/webhook", json=body)
        assert response.status_code == 200
        assert response.json()["status"] == "ignored"
    assert read_rows(settings.data_dir) == []


def test_webhook_takes_the_key_as_header_or_basic_password(
    make_client: Callable[..., TestClient]
) -> None:
    client = make_client(api_keys=["user-key"])
    body = event([])
    assert_error(client.post("/labelstudio/webhook", json=body), 401, "unauthorized")
    assert_error(client.post("/labelstudio/webhook", json=body,
                             headers={"X-API-Key": "wrong"}), 403, "forbidden")
    assert_error(client.post("/labelstudio/webhook", json=body, auth=("ls", "wrong")),
                 403, "forbidden")
    ok = client.post("/labelstudio/webhook", json=body, headers={"X-API-Key": "user-key"})
    assert ok.json()["status"] == "recorded"  # an empty result: nothing to detect
    basic = client.post("/labelstudio/webhook", json=event([], updated_at="t9"),
                        auth=("label-studio", "user-key"))
    assert basic.json()["status"] == "recorded"
    # Predictions stay open, as POST /predict: Label Studio's basic auth is simply not needed.
    assert client.post("/labelstudio/predict", json=predict_body()).status_code == 200


def test_config_lists_the_model_classes(make_client: Callable[..., TestClient]) -> None:
    response = make_client().get("/labelstudio/config")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text == CONFIG
    assert json.dumps(response.text).count("<Label ") == 3
