"""benchmarks.measure: figures from known latencies, paired turns in rotating order, rounds
merged into one run, min / median / max."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.measure import Run, Turn, measure_callable, measure_paired, merge_runs, spread


def test_run_figures() -> None:
    run = Run("x", 1, [10.0, 20.0, 30.0, 40.0], wall_s=0.5, stages=[{"a": 1.0}, {"a": 3.0}, {}])
    assert run.p50_ms == pytest.approx(25.0)
    assert run.p95_ms == pytest.approx(38.5)
    assert run.throughput == pytest.approx(8.0)
    assert run.stage_means() == {"a": 2.0}
    summary = run.summary()
    assert summary["requests"] == 4 and summary["mean_ms"] == 25.0
    assert run.mean_ms == 25.0 and Run("empty", 1, [], 0.0).mean_ms == 0.0


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


def test_merge_runs_pools_latencies_and_weights_server_means() -> None:
    first = Run("x", 8, [1.0, 2.0], 1.0, 0, [{"a": 1.0}], {"frontend_ms": 3.0})
    second = Run("x", 8, [3.0], 2.0, 1, [], {"frontend_ms": 6.0, "queue_ms": 1.0})
    merged = merge_runs([first, second])
    assert (merged.name, merged.clients, merged.latencies_ms) == ("x", 8, [1.0, 2.0, 3.0])
    assert merged.wall_s == 3.0 and merged.errors == 1 and merged.stages == [{"a": 1.0}]
    # (3 ms x 2 requests + 6 ms x 1) / 3; queue_ms only over the round that reported it.
    assert merged.server == {"frontend_ms": 4.0, "queue_ms": 1.0}


def test_measure_callable_times_each_call_after_warmup() -> None:
    calls: list[int] = []

    def fn() -> dict[str, float]:
        calls.append(1)
        return {"s": 2.0}

    run = measure_callable(fn, requests=5, warmup=2, name="f", stages=lambda result: result)
    assert len(calls) == 7 and run.requests == 5 and run.name == "f"
    assert run.stage_means() == {"s": 2.0} and run.wall_s >= sum(run.latencies_ms) / 1e3


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    assert spread([]) == {}
