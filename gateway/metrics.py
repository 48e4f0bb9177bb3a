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
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from gateway.prediction_cache import CacheStats
from yoloserve.drift_summary import DriftSummary

logger = logging.getLogger("gateway.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; detection on CPU sits around 50-200 ms, uploads and queueing add the tail.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)

_T = TypeVar("_T")

# The label values of gateway_retrains_total (gateway/retrain_trigger.py uses them).
RETRAIN_TRIGGERS = ("feedback", "api")
RETRAIN_OUTCOMES = ("started", "already_running", "start_failed")
# The label values of the review queue's counters (gateway/review/).
REVIEW_REASONS = ("uncertain", "rare", "novel")
REVIEW_OUTCOMES = ("labelled", "dismissed")


def _read_for_scrape(read: Callable[[], _T], what: str) -> _T | None:
    """``read()``, or None when it fails: a scrape must still answer with every other metric."""
    try:
        return read()
    except Exception:
        logger.warning("%s unavailable for /metrics", what, exc_info=True)
        return None


class GatewayMetrics:
    """The gateway's counters and histograms, on a private registry.

    Attributes:
        requests: Requests by route template, method and status.
        latency: Request latency in seconds by route template, method and status.
        model_server_errors: Failed model server calls by domain error code.
        predictions: Answered predictions by the model version that answered.
        feedback_requests: Accepted feedback submissions.
        feedback_rows: Feedback rows committed to the store.
        model_server_retries: Unpinned predictions retried once after an unavailable model
            server (a hot swap in progress), by the error code of the first attempt.
        retrains: Attempts of this gateway to start a retrain job, by trigger (``feedback``,
            ``api``) and outcome (``started``, ``already_running``, ``start_failed``).
        review_sampled: Predictions this gateway put into the review queue, by reason.
        reviewed: Review items closed, by outcome (``labelled``, ``dismissed``) and reason.

    Besides these, three sets of gauges are read at scrape time, because what they report is
    decided outside this process (each is left out when its callable is None, and shows no
    sample when the read fails or there is nothing yet):

    * ``gateway_retrain_jobs{state}``: the registry's jobs by state (queued, running, succeeded,
      rejected, failed); a job's outcome is decided in the job's own process.
    * ``gateway_serving_version{version}``: 1 for the registry's default version, the one
      unpinned predictions get (a retrain or an operator may change it at any time).
    * ``gateway_prediction_cache_lookups_total{result}`` (``hit``/``miss``) and
      ``gateway_prediction_cache_entries``: the feedback route's reuse of recent predictions
      (:mod:`gateway.prediction_cache`); a miss costs a model call.
    * ``gateway_drift_share``, ``gateway_drift_detected``, ``gateway_embedding_drift``,
      ``gateway_drift_prod_rows``, ``gateway_drift_run_timestamp_seconds``: the latest drift
      report of the reporting watcher (:mod:`yoloserve.drift_summary`).
    * ``gateway_review_queue_depth``: open items of the review queue, which every gateway
      replica shares (rows of the store).

    Args:
        job_states: Returns the number of retrain jobs per state.
        serving_version: Returns the default version, or None when there is none.
        drift_summary: Returns the latest drift summary, or None when none was written yet.
    """

    def __init__(
        self,
        job_states: Callable[[], Mapping[str, int]] | None = None,
        serving_version: Callable[[], str | None] | None = None,
        drift_summary: Callable[[], DriftSummary | None] | None = None,
        mlflow_status: Callable[[], Mapping[str, Any]] | None = None,
        prediction_cache: Callable[[], CacheStats] | None = None,
        review_depth: Callable[[], int] | None = None,
    ) -> None:
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
        # At 0 from the start: increase() cannot see the first step of a series born at 1, and
        # the RetrainStartsFailing alert counts exactly those steps.
        for trigger in RETRAIN_TRIGGERS:
            for outcome in RETRAIN_OUTCOMES:
                self.retrains.labels(trigger=trigger, outcome=outcome)
        self.review_sampled = Counter(
            "gateway_review_sampled",
            "Predictions put into the review queue, by reason",
            ("reason",),
            registry=self.registry,
        )
        self.reviewed = Counter(
            "gateway_review_items_reviewed",
            "Review items closed, by outcome (labelled, dismissed) and reason",
            ("outcome", "reason"),
            registry=self.registry,
        )
        for reason in REVIEW_REASONS:
            self.review_sampled.labels(reason=reason)
            for review_outcome in REVIEW_OUTCOMES:
                self.reviewed.labels(outcome=review_outcome, reason=reason)
        if job_states is not None:
            self.registry.register(_JobStatesCollector(job_states))
        if serving_version is not None:
            self.registry.register(_ServingVersionCollector(serving_version))
        if drift_summary is not None:
            self.registry.register(_DriftCollector(drift_summary))
        if mlflow_status is not None:
            self.registry.register(_MlflowMirrorCollector(mlflow_status))
        if prediction_cache is not None:
            self.registry.register(_PredictionCacheCollector(prediction_cache))
        if review_depth is not None:
            self.registry.register(_ReviewDepthCollector(review_depth))

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
        states = _read_for_scrape(self._job_states, "retrain job states") or {}
        for state, count in sorted(states.items()):
            family.add_metric((state,), count)
        yield family


class _ServingVersionCollector(Collector):
    """``gateway_serving_version{version}``: 1 for the registry's default version."""

    _NAME = "gateway_serving_version"
    _HELP = "The model version unpinned predictions are served by (the registry's default): 1"

    def __init__(self, serving_version: Callable[[], str | None]) -> None:
        self._serving_version = serving_version

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._NAME, self._HELP, labels=("version",))

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._NAME, self._HELP, labels=("version",))
        version = _read_for_scrape(self._serving_version, "serving version")
        if version is not None:
            family.add_metric((version,), 1)
        yield family


class _ReviewDepthCollector(Collector):
    """``gateway_review_queue_depth``: open review items, counted in the store at scrape time."""

    _NAME = "gateway_review_queue_depth"
    _HELP = "Open items in the review queue (predictions waiting for a label)"

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._NAME, self._HELP)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._NAME, self._HELP)
        depth = _read_for_scrape(self._depth, "review queue depth")
        if depth is not None:
            family.add_metric((), depth)
        yield family


class _MlflowMirrorCollector(Collector):
    """The MLflow mirror's health from ``<run_dir>/tracking/status.json`` (the trainer and the
    CLIs write it): MLflow calls that failed, and whether the last sync left MLflow in agreement.
    """

    _FAILURES = ("gateway_mlflow_mirror_failures", "MLflow calls of the mirror that failed")
    _IN_SYNC = ("gateway_mlflow_mirror_in_sync",
                "1 when the last MLflow sync succeeded after the last failure, else 0")

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*self._FAILURES)
        yield GaugeMetricFamily(*self._IN_SYNC)

    def collect(self) -> Iterator[Metric]:
        data = _read_for_scrape(self._read, "MLflow mirror status") or {}
        yield CounterMetricFamily(*self._FAILURES, value=float(data.get("failures_total", 0)))
        if data.get("in_sync") is not None:
            yield GaugeMetricFamily(*self._IN_SYNC, value=1.0 if data["in_sync"] else 0.0)


class _PredictionCacheCollector(Collector):
    """Lookups of ``POST /feedback`` in the prediction cache, and its size, at scrape time."""

    _LOOKUPS = ("gateway_prediction_cache_lookups",
                "Prediction cache lookups of POST /feedback, by result (a miss runs the model)")
    _ENTRIES = ("gateway_prediction_cache_entries", "Predictions held in the cache")

    def __init__(self, read: Callable[[], CacheStats]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*self._LOOKUPS, labels=("result",))
        yield GaugeMetricFamily(*self._ENTRIES)

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        lookups = CounterMetricFamily(*self._LOOKUPS, labels=("result",))
        lookups.add_metric(("hit",), stats.hits)
        lookups.add_metric(("miss",), stats.misses)
        yield lookups
        yield GaugeMetricFamily(*self._ENTRIES, value=stats.entries)


class _DriftCollector(Collector):
    """The latest drift report's headline numbers, one gauge each; no samples before the first."""

    _FAMILIES = (
        ("gateway_drift_share", "Share of drifted embedding columns in the latest drift report"),
        (
            "gateway_drift_detected",
            "1 when the latest drift report flagged dataset drift (share over the threshold)",
        ),
        (
            "gateway_embedding_drift",
            "Distance of mean prod and mean reference embeddings in the latest drift report",
        ),
        ("gateway_drift_prod_rows", "Production rows the latest drift report compared"),
        (
            "gateway_drift_run_timestamp_seconds",
            "Unix time the latest drift report was computed (how fresh the drift gauges are)",
        ),
    )

    def __init__(self, drift_summary: Callable[[], DriftSummary | None]) -> None:
        self._drift_summary = drift_summary

    def describe(self) -> Iterator[Metric]:
        for name, help_text in self._FAMILIES:
            yield GaugeMetricFamily(name, help_text)

    def collect(self) -> Iterator[Metric]:
        summary = _read_for_scrape(self._drift_summary, "drift summary")
        values: dict[str, float | None] = {}
        if summary is not None:
            values = {
                "gateway_drift_share": summary.drift_share,
                "gateway_drift_detected": float(summary.dataset_drift),
                "gateway_embedding_drift": summary.embedding_drift,
                "gateway_drift_prod_rows": float(summary.prod_rows),
                "gateway_drift_run_timestamp_seconds": summary.timestamp,
            }
        for name, help_text in self._FAMILIES:
            family = GaugeMetricFamily(name, help_text)
            value = values.get(name)
            if value is not None:
                family.add_metric((), value)
            yield family
