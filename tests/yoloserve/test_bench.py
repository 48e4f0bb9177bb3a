"""The benchmark's measuring tools: figures from known latencies, TorchServe's counters read from
Prometheus text, paired turns in rotating order, and seeded images."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from yoloserve.bench import Run, TorchServeCounters, bench_image, measure_paired, prometheus_totals

Turn = tuple[float, dict[str, float], dict[str, float]]

PROMETHEUS = """\
# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="yolo",model_version="default",hostname="vm",} 10.0
ts_inference_requests_total{model_name="yolo",model_version="2",hostname="vm",} 2.0
ts_inference_latency_microseconds{model_name="yolo",model_version="default",hostname="vm",} 500000.0
ts_queue_latency_microseconds{model_name="yolo",model_version="default",hostname="vm",} 60000.5
HandlerTime{ModelName="yolo",Level="Model",Hostname="vm",} 52.48
"""


def test_run_figures() -> None:
    run = Run("x", 1, [10.0, 20.0, 30.0, 40.0], wall_s=0.5, stages=[{"a": 1.0}, {"a": 3.0}, {}])
    assert run.p50_ms == pytest.approx(25.0)
    assert run.p95_ms == pytest.approx(38.5)
    assert run.throughput == pytest.approx(8.0)
    assert run.stage_means() == {"a": 2.0}
    summary = run.summary()
    assert summary["requests"] == 4 and summary["mean_ms"] == 25.0


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


def test_paired_turns_rotate_and_count() -> None:
    calls: list[str] = []

    def target(name: str, ms: float) -> Callable[[], Turn]:
        def once() -> Turn:
            calls.append(name)
            return ms, {"stage": ms / 2}, {"frontend_ms": ms}

        return once

    runs = measure_paired({"a": target("a", 1.0), "b": target("b", 3.0)}, requests=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then rotating
    assert runs["a"].latencies_ms == [1.0] * 4 and runs["b"].p50_ms == 3.0
    assert runs["b"].stage_means() == {"stage": 1.5}
    assert runs["b"].server == {"frontend_ms": 3.0}
    assert runs["a"].wall_s == pytest.approx(0.004)


def test_bench_image_is_seeded_square_jpeg() -> None:
    first, second = bench_image(320), bench_image(320)
    assert first == second
    with Image.open(io.BytesIO(bench_image(640))) as image:
        assert (image.format, image.size) == ("JPEG", (640, 640))
