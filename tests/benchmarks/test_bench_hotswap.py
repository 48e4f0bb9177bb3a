"""benchmarks.hotswap: latency figures of a background load, stale answers after a swap."""

from __future__ import annotations

from benchmarks.hotswap import (
    Call,
    Outcome,
    Swap,
    latency_figures,
    slow_by_phase,
    stale_answers,
    swap_marks,
)


def test_latency_figures_count_only_answered_requests() -> None:
    outcomes = [Outcome(0.0, 0.1, 200, "1"), Outcome(0.0, 1.5, 200, "1"),
                Outcome(0.0, 0.2, 503, None, "busy")]
    figures = latency_figures(outcomes)
    assert figures["requests"] == 3 and figures["max_ms"] == 1500.0 and figures["over_1s"] == 1
    assert figures["p50_ms"] == 800.0
    assert latency_figures([Outcome(0.0, 1.0, 0, None, "refused")]) == {"requests": 1}


def test_stale_answers_between_a_swap_and_the_next() -> None:
    swaps = [("2", 10.0, 12.0), ("1", 20.0, 22.0)]
    outcomes = [
        Outcome(13.0, 14.0, 200, "1"),  # after the swap to v2 returned: stale
        Outcome(14.0, 15.0, 200, "2"),
        Outcome(11.0, 13.0, 200, "1"),  # started inside the swap: not counted
        Outcome(23.0, 24.0, 200, "2"),  # after the swap back to v1: stale
        Outcome(24.0, 31.0, 200, "2"),  # ends after the end of the run: not counted
        Outcome(25.0, 26.0, 503, None, "busy"),  # failed, not an answer
    ]
    assert stale_answers(outcomes, swaps, t_end=30.0) == 2


def test_swap_phases_come_from_the_swap_calls() -> None:
    calls = [Call("POST", "/models", 0.0, 0.1), Call("GET", "/models/yolo/2", 1.0, 1.1),
             Call("GET", "/models/yolo/2", 2.0, 2.1), Call("POST", "/predictions/yolo/2", 2.2, 2.9),
             Call("PUT", "/models/yolo/2/set-default", 3.0, 3.1),
             Call("POST", "/predictions/yolo/1", 5.1, 5.2),
             Call("DELETE", "/models/yolo/1", 5.3, 5.4)]
    marks = swap_marks(calls, "2", "yolo")
    assert marks == {"ready": 2.1, "set_default": 3.1, "unregistered": 5.4}
    swap = Swap("2", 0.0, 5.5, 8, marks)
    assert [swap.phase_at(t) for t in (1.0, 2.5, 4.0, 6.0)] == [
        "loading", "warm-up", "drain", "outside"]


def test_slow_requests_are_counted_by_phase_and_version() -> None:
    swap = Swap("2", 10.0, 20.0, 8, {"ready": 15.0, "set_default": 16.0})
    outcomes = [Outcome(11.0, 12.5, 200, "1"), Outcome(11.0, 11.5, 200, "1"),  # fast: not counted
                Outcome(15.5, 17.0, 200, "2"), Outcome(17.0, 19.0, 200, "2"),
                Outcome(25.0, 27.0, 200, "2"), Outcome(12.0, 14.0, 503, None, "busy")]
    assert slow_by_phase(outcomes, [swap]) == {
        "drain -> v2": 1, "loading -> v1": 1, "outside -> v2": 1, "warm-up -> v2": 1}
