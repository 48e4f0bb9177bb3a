"""``GET /metrics``: Prometheus text with the gateway's own registry."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient


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
