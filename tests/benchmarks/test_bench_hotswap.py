"""benchmarks.hotswap: latency figures of a background load, stale answers after a swap."""

from __future__ import annotations

from benchmarks.hotswap import Outcome, latency_figures, stale_answers


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
