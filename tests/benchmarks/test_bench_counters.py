"""benchmarks.counters: TorchServe's counters read from Prometheus text, per-request means."""

from __future__ import annotations

from benchmarks.counters import TorchServeCounters, prometheus_totals

PROMETHEUS = """\
# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="yolo",model_version="default",hostname="vm",} 10.0
ts_inference_requests_total{model_name="yolo",model_version="2",hostname="vm",} 2.0
ts_inference_latency_microseconds{model_name="yolo",model_version="default",hostname="vm",} 500000.0
ts_queue_latency_microseconds{model_name="yolo",model_version="default",hostname="vm",} 60000.5
HandlerTime{ModelName="yolo",Level="Model",Hostname="vm",} 52.48
"""


def test_prometheus_totals_sum_label_sets_and_skip_others() -> None:
    totals = prometheus_totals(PROMETHEUS, TorchServeCounters.NAMES)
    assert totals == {
        "ts_inference_requests_total": 12.0,
        "ts_inference_latency_microseconds": 500000.0,
        "ts_queue_latency_microseconds": 60000.5,
    }


def test_counter_means_per_request_in_ms() -> None:
    before = dict.fromkeys(TorchServeCounters.NAMES, 0.0)
    after = prometheus_totals(PROMETHEUS, TorchServeCounters.NAMES)
    assert TorchServeCounters.means(before, after) == {"frontend_ms": 41.67, "queue_ms": 5.0}
    assert TorchServeCounters.means(after, after) == {}  # no request in between: no figure


def test_read_is_zero_when_the_metrics_api_does_not_answer() -> None:
    counters = TorchServeCounters("http://127.0.0.1:9/")  # discard port: connection refused
    assert counters.url == "http://127.0.0.1:9/metrics"
    assert counters.read() == dict.fromkeys(TorchServeCounters.NAMES, 0.0)
