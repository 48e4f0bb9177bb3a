"""``GET /metrics``: Prometheus text with the gateway's own registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from yoloserve.drift_summary import FILE_NAME as DRIFT_SUMMARY_FILE
from yoloserve.drift_summary import DriftSummary, write_summary
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import open_store


def test_metrics_count_requests_by_route_and_status(client: TestClient, png_bytes: bytes) -> None:
    client.post("/predict", files={"file": ("a.png", png_bytes)})
    client.post("/predict", files={"file": ("a.txt", b"text")})
    client.get("/nowhere")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'gateway_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'gateway_requests_total{method="POST",route="/predict",status="415"} 1.0' in text
    assert 'gateway_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert (
        'gateway_request_duration_seconds_count{method="POST",route="/predict",status="200"} 1.0'
        in text
    )
    assert 'gateway_predictions_total{model_version="3"} 1.0' in text


def test_metrics_expose_the_feedback_and_retrain_counters(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in (
        "gateway_model_server_errors_total",
        "gateway_feedback_requests_total",
        "gateway_feedback_rows_total",
        "gateway_retrains_total",
    ):
        assert f"# TYPE {name} counter" in text


def test_each_app_has_its_own_registry(build_app: Callable[..., FastAPI]) -> None:
    with TestClient(build_app()) as first, TestClient(build_app()) as second:
        first.get("/health")
        assert 'route="/health"' in first.get("/metrics").text
        assert 'route="/health"' not in second.get("/metrics").text


def _add_versions(registry: Registry, n: int) -> None:
    for i in range(1, n + 1):
        registry.add_version(sha256=f"{i:02d}" * 32, mar=f"yolo_v{i}.mar", classes=["a", "b"])


def test_serving_version_is_the_registry_default_at_scrape_time(
    client: TestClient, settings: Settings
) -> None:
    assert "gateway_serving_version{" not in client.get("/metrics").text  # no version yet
    registry = Registry(open_store(settings.store.url))
    _add_versions(registry, 2)
    assert 'gateway_serving_version{version="1"} 1.0' in client.get("/metrics").text

    registry.set_default("2")  # a retrain or a rollback, in another process

    text = client.get("/metrics").text
    assert 'gateway_serving_version{version="2"} 1.0' in text
    assert 'version="1"' not in text.split("gateway_serving_version", 1)[1]


def test_retrain_jobs_report_every_state_from_the_first_scrape(client: TestClient) -> None:
    text = client.get("/metrics").text

    for state in ("queued", "running", "succeeded", "rejected", "failed"):
        assert f'gateway_retrain_jobs{{state="{state}"}} 0.0' in text


def test_drift_gauges_are_absent_until_the_watcher_writes_a_summary(
    client: TestClient, settings: Settings
) -> None:
    text = client.get("/metrics").text
    assert "# TYPE gateway_drift_share gauge" in text
    assert "\ngateway_drift_share " not in text

    summary = DriftSummary(
        run_id="r1", timestamp=1_700_000_000.0, prod_rows=120, drift_share=0.75,
        dataset_drift=True, embedding_drift=4.25,
    )
    write_summary(settings.data_dir / DRIFT_SUMMARY_FILE, summary)

    text = client.get("/metrics").text
    assert "\ngateway_drift_share 0.75" in text
    assert "\ngateway_drift_detected 1.0" in text
    assert "\ngateway_embedding_drift 4.25" in text
    assert "\ngateway_drift_prod_rows 120.0" in text
    assert "\ngateway_drift_run_timestamp_seconds 1.7e+09" in text


def test_drift_summary_path_can_be_set(build_app: Callable[..., FastAPI], tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "drift.json"
    write_summary(path, DriftSummary("r", 1.0, 10, 0.125, False, None))

    with TestClient(build_app(drift_summary_path=path)) as client:
        text = client.get("/metrics").text

    assert "\ngateway_drift_share 0.125" in text
    assert "\ngateway_drift_detected 0.0" in text
    assert "\ngateway_embedding_drift " not in text  # the report had no distance


def test_metrics_survive_an_unreadable_drift_summary(
    client: TestClient, settings: Settings
) -> None:
    path = settings.data_dir / DRIFT_SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{half a file")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert "\ngateway_drift_share " not in response.text
    assert "gateway_requests_total" in response.text


def test_retrain_starts_exist_at_zero_for_every_trigger_and_outcome(client: TestClient) -> None:
    text = client.get("/metrics").text

    for trigger in ("feedback", "api"):
        for outcome in ("started", "already_running", "start_failed"):
            sample = f'gateway_retrains_total{{outcome="{outcome}",trigger="{trigger}"}} 0.0'
            assert sample in text


def test_mlflow_mirror_outages_are_counted_from_the_status_file(
    build_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    from yoloserve.tracking import status

    with TestClient(build_app(mlflow_status_dir=tmp_path)) as client:
        before = client.get("/metrics").text
        status.record_failure(tmp_path, "log metrics", ConnectionError("refused"))
        status.record_failure(tmp_path, "sync", ConnectionError("refused"))
        failing = client.get("/metrics").text
        status.record_sync(tmp_path)
        repaired = client.get("/metrics").text
    assert "gateway_mlflow_mirror_failures_total 0.0" in before
    assert "gateway_mlflow_mirror_in_sync" not in before, "nothing tracked yet"
    assert "gateway_mlflow_mirror_failures_total 2.0" in failing
    assert "gateway_mlflow_mirror_in_sync 0.0" in failing
    assert "gateway_mlflow_mirror_in_sync 1.0" in repaired
