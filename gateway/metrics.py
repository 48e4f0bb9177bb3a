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

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

logger = logging.getLogger("gateway.metrics")

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
        model_server_retries: Unpinned predictions retried once after an unavailable model
            server (a hot swap in progress), by the error code of the first attempt.
        retrains: Attempts of this gateway to start a retrain job, by trigger (``feedback``,
            ``api``) and outcome (``started``, ``already_running``, ``start_failed``).

    Besides these, ``gateway_retrain_jobs{state}`` reports the jobs of the registry by state
    (queued, running, succeeded, rejected, failed) when ``job_states`` is given: the outcome of
    a job is decided in the job's own process, so it is read from the registry at scrape time.

    Args:
        job_states: Returns the number of retrain jobs per state; None leaves the gauge out.
    """

    def __init__(self, job_states: Callable[[], Mapping[str, int]] | None = None) -> None:
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
        self.model_server_retries = Counter(
            "gateway_model_server_retries",
            "Unpinned predictions retried once, by the error code of the first attempt",
            ("code",),
            registry=self.registry,
        )
        self.retrains = Counter(
            "gateway_retrains",
            "Retrain starts asked by this gateway, by trigger and outcome",
            ("trigger", "outcome"),
            registry=self.registry,
        )
        if job_states is not None:
            self.registry.register(_JobStatesCollector(job_states))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered HTTP request."""
        label = (route, method, str(status))
        self.requests.labels(*label).inc()
        self.latency.labels(*label).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class _JobStatesCollector(Collector):
    """``gateway_retrain_jobs{state}``: the registry's retrain jobs counted at scrape time."""

    _NAME = "gateway_retrain_jobs"
    _HELP = "Retrain jobs in the model registry, by state"

    def __init__(self, job_states: Callable[[], Mapping[str, int]]) -> None:
        self._job_states = job_states

    def describe(self) -> Iterator[Metric]:
        # Describing must not read the registry file: it happens when the collector registers.
        yield GaugeMetricFamily(self._NAME, self._HELP, labels=("state",))

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._NAME, self._HELP, labels=("state",))
        try:
            states = self._job_states()
        except Exception:
            # A scrape must still answer with every other metric when the registry is unreadable.
            logger.warning("retrain job states unavailable for /metrics", exc_info=True)
            states = {}
        for state, count in sorted(states.items()):
            family.add_metric((state,), count)
        yield family
