"""The one error mapping: one test per domain error, plus validation, routing and crashes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from tests.gateway.fake_torchserve import assert_error
from yoloserve import errors as e
from yoloserve.modelserver.accuracy import AccuracyReport, MapScores
from yoloserve.modelserver.export import ExportError
from yoloserve.modelserver.packaging import AccuracyError, PackagingError, ParityError
from yoloserve.modelserver.parity import ParityReport

_FAILED_PARITY = ParityReport(passed=False, images=7, boxes=60, max_box_px=8.6, max_conf=0.16,
                              limits={"px": 0.5, "conf": 1e-3}, conf_threshold=0.1)
_FAILED_ACCURACY = AccuracyReport(
    passed=False, images=40, boxes=110, reference=MapScores(map50=0.97, map50_95=0.84),
    candidate=MapScores(map50=0.34, map50_95=0.24), deltas={"map50": -0.63, "map50_95": -0.6},
    tolerance=0.01, conf_threshold=0.001,
)


def _raising_app(build_app: Callable[..., FastAPI], exc: Exception) -> FastAPI:
    app = build_app()

    async def boom() -> None:
        raise exc

    app.add_api_route("/boom", boom)
    return app


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (e.InvalidParameter("conf out of range"), 400, "invalid_parameter"),
        (e.InvalidLabels("unknown class 'hexagon'"), 400, "invalid_labels"),
        (e.InputError(), 400, "invalid_input"),
        (e.Unauthorized(), 401, "unauthorized"),
        (e.Forbidden(), 403, "forbidden"),
        (e.UnknownVersion("no version 9"), 404, "unknown_version"),
        (e.UnknownJob("no job r-0042"), 404, "unknown_job"),
        (e.RetrainAlreadyRunning(), 409, "retrain_already_running"),
        (e.VersionAlreadyRegistered(), 409, "version_already_registered"),
        (e.PayloadTooLarge(), 413, "payload_too_large"),
        (e.ImageTooLarge(), 413, "image_too_large"),
        (e.InvalidImage(), 415, "invalid_image"),
        (e.UnsupportedImageFormat(), 415, "unsupported_image_format"),
        (e.ModelServerBadResponse(), 502, "model_server_bad_response"),
        (e.ModelServerError(), 502, "model_server_error"),
        (e.KubernetesError("PATCH ...: 422 invalid", status=422), 502, "kubernetes_error"),
        (e.TaskImageUnavailable(), 502, "task_image_unavailable"),
        (e.InvalidTask(), 400, "invalid_task"),
        (e.ModelServerUnavailable(), 503, "model_server_unavailable"),
        (e.ModelNotReady(), 503, "model_not_ready"),
        (e.EmbeddingsUnavailable(), 503, "embeddings_unavailable"),
        (e.ModelServerTimeout(), 504, "model_server_timeout"),
        (e.RegistryError(), 500, "registry_error"),
        (e.UnknownClass(), 400, "unknown_class"),
        (e.CsvSchemaError(), 409, "csv_schema_mismatch"),
        # Defined beside the packaging code; the gateway imports it through
        # yoloserve.modelserver.deploy.
        (PackagingError("archiver failed"), 500, "registry_error"),
        (ExportError("exporter failed"), 500, "export_failed"),
        (ParityError("no parity", _FAILED_PARITY), 500, "parity_failed"),
        (AccuracyError("INT8 lost mAP", _FAILED_ACCURACY), 500, "accuracy_failed"),
        (e.VersionRejected(), 409, "version_rejected"),
        (e.SwapInProgress(), 409, "swap_in_progress"),
        (e.InvalidIdempotencyKey(), 400, "invalid_idempotency_key"),
        (e.IdempotencyKeyReused(), 409, "idempotency_key_reused"),
        (e.UnknownReviewItem("no review item 'rv-1'"), 404, "unknown_review_item"),
        (e.ReviewItemClosed("rv-1 was dismissed"), 409, "review_item_closed"),
        (e.UnsupportedExportFormat("format 'voc'"), 422, "unsupported_export_format"),
        (e.DatasetInvalid("3 problems"), 400, "dataset_invalid"),
        (e.UnknownDataset("no dataset 'x'"), 404, "unknown_dataset"),
        (e.NoLabelsCollected(), 404, "no_labels_collected"),
        (e.DatasetExists("dataset 'x' exists"), 409, "dataset_exists"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_domain_error_maps_to_status_and_code(
    build_app: Callable[..., FastAPI], exc: e.YoloServeError, status: int, code: str
) -> None:
    with TestClient(_raising_app(build_app, exc)) as client:
        response = client.get("/boom")

    error = assert_error(response, status, code)
    assert error["message"] == exc.message
    # Every 503 says when to come back; nothing else does.
    assert ("Retry-After" in response.headers) == (status == 503)


def test_every_domain_error_class_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for sub in cls.__subclasses__() for s in subclasses(sub)}

    tested = {
        "InvalidParameter",
        "InvalidLabels",
        "InputError",
        "Unauthorized",
        "Forbidden",
        "UnknownVersion",
        "UnknownJob",
        "RetrainAlreadyRunning",
        "VersionAlreadyRegistered",
        "PayloadTooLarge",
        "ImageTooLarge",
        "InvalidImage",
        "UnsupportedImageFormat",
        "ModelServerBadResponse",
        "ModelServerError",
        "ModelServerUnavailable",
        "ModelNotReady",
        "EmbeddingsUnavailable",
        "ModelServerTimeout",
        "RegistryError",
        "UnknownClass",
        "CsvSchemaError",
        "VersionRejected",
        "SwapInProgress",
        "InvalidIdempotencyKey",
        "IdempotencyKeyReused",
        "PackagingError",
        "ExportError",
        "ParityError",
        "AccuracyError",
        "KubernetesError",
        "UnknownReviewItem",
        "ReviewItemClosed",
        "UnsupportedExportFormat",
        "DatasetInvalid",
        "UnknownDataset",
        "NoLabelsCollected",
        "DatasetExists",
        "InvalidTask",
        "VersionClassesDiffer",
        "TaskImageUnavailable",
    }
    abstract = {"YoloServeError", "AuthError", "NotFound", "Conflict"}
    assert {c.__name__ for c in subclasses(e.YoloServeError)} - abstract == tested


def test_retry_after_uses_the_hint_of_the_error(build_app: Callable[..., FastAPI]) -> None:
    app = _raising_app(build_app, e.ModelServerUnavailable("loading", retry_after_s=42))
    with TestClient(app) as client:
        assert client.get("/boom").headers["Retry-After"] == "42"


def test_retry_after_defaults_to_the_setting(build_app: Callable[..., FastAPI]) -> None:
    app = _raising_app(build_app, e.ModelServerUnavailable())
    app.state.settings = app.state.settings.model_copy(update={"retry_after_s": 7})
    with TestClient(app) as client:
        assert client.get("/boom").headers["Retry-After"] == "7"


def test_unauthorized_tells_how_to_authenticate(build_app: Callable[..., FastAPI]) -> None:
    with TestClient(_raising_app(build_app, e.Unauthorized())) as client:
        assert client.get("/boom").headers["WWW-Authenticate"] == "ApiKey"


def test_unexpected_exception_is_500_json_without_traceback(
    build_app: Callable[..., FastAPI],
) -> None:
    app = _raising_app(build_app, RuntimeError("secret internals at /srv/app.py line 3"))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert error["request_id"] in error["message"]


def test_bad_query_value_is_400_invalid_parameter(client: TestClient) -> None:
    response = client.post("/predict", params={"max_det": 0}, files={"file": ("a", b"x")})
    error = assert_error(response, 400, "invalid_parameter")
    assert "max_det" in error["message"]


def test_wrong_query_type_is_400_invalid_parameter(build_app: Callable[..., FastAPI]) -> None:
    app = build_app()

    async def typed(n: int = Query()) -> dict[str, int]:
        return {"n": n}

    app.add_api_route("/typed", typed)
    with TestClient(app) as client:
        assert_error(client.get("/typed", params={"n": "many"}), 400, "invalid_parameter")


def test_body_schema_violation_is_422(client: TestClient) -> None:
    response = client.post("/predict", data={"not_file": "x"})
    error = assert_error(response, 422, "validation_error")
    assert "file" in error["message"]


def test_unknown_route_is_404_json(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_wrong_method_is_405_json(client: TestClient) -> None:
    response = client.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
