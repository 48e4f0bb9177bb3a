"""The benchmark's measuring tools: figures from known latencies, TorchServe's counters read from
Prometheus text, paired turns in rotating order, seeded images, and the helpers of the feedback,
hot swap and retrain-loop sections (labels, lost-row counts, log times, swap windows)."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from benchmarks.support import (
    Run,
    TorchServeCounters,
    bench_image,
    closed_loop,
    feedback_boxes,
    grid_boxes,
    log_time,
    lost_rows,
    measure_paired,
    overlaps,
    prometheus_totals,
    rows_by_column,
    spread,
    step_durations,
)
from yoloserve.training.dataset import Shape

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


# ------------------------------------------------------- feedback, hot swap and loop helpers


def test_grid_boxes_are_disjoint_inside_the_image_with_names_in_turn() -> None:
    boxes = grid_boxes(100, 60, 5, ["circle", "square"])
    assert len(boxes) == 5 and [b["name"] for b in boxes] == ["circle", "square"] * 2 + ["circle"]
    for k, a in enumerate(boxes):
        x1, y1, x2, y2 = a["xyxy"]
        assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 60
        for b in boxes[k + 1:]:
            u1, v1, u2, v2 = b["xyxy"]
            assert x2 <= u1 or u2 <= x1 or y2 <= v1 or v2 <= y1  # no overlap at all
    assert grid_boxes(100, 60, 0, ["circle"]) == []


def test_feedback_boxes_carry_the_true_shapes() -> None:
    shapes = [Shape(2, (1.234, 2.0, 30.5, 40.0)), Shape(0, (5.0, 5.0, 9.0, 9.0))]
    assert feedback_boxes(shapes) == [
        {"xyxy": [1.23, 2.0, 30.5, 40.0], "name": "triangle"},
        {"xyxy": [5.0, 5.0, 9.0, 9.0], "name": "circle"},
    ]


def test_rows_by_column_and_lost_rows(tmp_path: Path) -> None:
    path = tmp_path / "prod.csv"
    assert rows_by_column(path, "feedback_id") == Counter()
    path.write_text("emb_0,feedback_id\n0.1,a\n0.2,a\n0.3,b\n")
    found = rows_by_column(path, "feedback_id")
    assert found == Counter({"a": 2, "b": 1})
    # c was acknowledged and is missing, b lost one of its two rows; a is complete.
    assert lost_rows({"a": 2, "b": 2, "c": 1}, found) == {"b": 1, "c": 1}
    assert lost_rows({"a": 1}, found) == {}  # more rows than acknowledged is no loss


def test_log_time_reads_the_first_matching_line() -> None:
    log = ("ultralytics noise without a time\n"
           "2026-11-23 10:49:37,469 INFO yoloserve.retrain.job: job r-0002: parent v3, data {}\n"
           "2026-11-23 10:55:01,001 INFO yoloserve.retrain.job: job r-0002: v4 serves now\n")
    start = log_time(log, "job r-0002: parent")
    assert start == datetime(2026, 11, 23, 10, 49, 37, 469000).timestamp()
    assert log_time(log, "serves now") == pytest.approx(start + 323.532)
    assert log_time(log, "noise") is None  # a line without a timestamp is not a mark
    assert log_time(log, "rejected") is None


def test_overlaps_closed_intervals() -> None:
    windows = [(10.0, 12.0), (20.0, 21.0)]
    assert overlaps(9.0, 10.0, windows) and overlaps(11.0, 11.5, windows)
    assert overlaps(12.0, 30.0, windows) and overlaps(5.0, 25.0, windows)
    assert not overlaps(12.1, 19.9, windows) and not overlaps(0.0, 1.0, [])


def test_spread_and_step_durations() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    assert spread([]) == {}
    marks = {"a": 100.0, "b": None, "c": 104.26, "d": 103.0}
    assert step_durations(marks) == {"a": None, "b": None, "c": 4.3, "d": -1.3}


def test_closed_loop_keeps_at_most_clients_in_flight() -> None:
    in_flight, peak, seen = 0, 0, []

    async def send(http: httpx.AsyncClient, i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        seen.append(i)
        return i * 2

    results, wall = closed_loop(send, total=25, clients=4)
    assert sorted(results) == [i * 2 for i in range(25)] and sorted(seen) == list(range(25))
    assert peak == 4 and wall > 0
