"""Prometheus metrics of one gateway app.

Each app gets its own ``CollectorRegistry`` so that several apps in one process (tests) do not
collide on metric names and each ``/metrics`` shows only its own app.

Example:
    >>> metrics = GatewayMetrics()
    >>> metrics.feedback_rows.inc(3)
    >>> b"gateway_feedback_rows_total 3.0" in metrics.render()
    True
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; detection on CPU sits around 50-200 ms, uploads and queueing add the tail.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)


class GatewayMetrics:
    """The gateway's counters and histograms, on a private registry.

    Attributes:
        requests: Requests by route template, method and status.
        latency: Request latency in seconds by route template, method and status.
        model_server_errors: Failed model server calls by domain error code.
        predictions: Answered predictions by the model version that answered.
        feedback_requests: Accepted feedback submissions.
        feedback_rows: Rows appended to ``data/prod_data.csv``.
        retrains: Retrain jobs by outcome (triggered, succeeded, rejected, failed).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "method", "status")
        self.requests = Counter(
            "gateway_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "HTTP request latency",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_server_errors = Counter(
            "gateway_model_server_errors",
            "Failed calls to the model server, by error code",
            ("code",),
            registry=self.registry,
        )
        self.predictions = Counter(
            "gateway_predictions",
            "Predictions answered, by model version",
            ("model_version",),
            registry=self.registry,
        )
        self.feedback_requests = Counter(
            "gateway_feedback_requests", "Feedback submissions accepted", registry=self.registry
        )
        self.feedback_rows = Counter(
            "gateway_feedback_rows", "Rows appended to the production CSV", registry=self.registry
        )
        self.retrains = Counter(
            "gateway_retrains",
            "Retrain jobs, by outcome (triggered, succeeded, rejected, failed)",
            ("outcome",),
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered HTTP request."""
        label = (route, method, str(status))
        self.requests.labels(*label).inc()
        self.latency.labels(*label).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
