"""RUNTIME=auto's timing and choice, on stand-in handlers whose speed is known."""

from __future__ import annotations

import time

import pytest

from yoloserve.modelserver.selection import selection_record, time_handlers


def _sleeper(seconds: float, calls: list[str], name: str):  # type: ignore[no-untyped-def]
    def handle(image: bytes) -> None:
        calls.append(name)
        time.sleep(seconds)

    return handle


def test_handlers_are_timed_interleaved_after_their_warm_up() -> None:
    calls: list[str] = []
    handlers = {"slow": _sleeper(0.004, calls, "slow"), "fast": _sleeper(0.0, calls, "fast")}
    timings = time_handlers(handlers, [b"a", b"b"], rounds=6, warmup=1)
    assert timings["slow"] >= 4.0 > timings["fast"]
    # Warm-up: each handler once per image; then the rounds alternate handler by handler.
    assert calls[:4] == ["slow", "slow", "fast", "fast"]
    assert calls[4:] == ["slow", "fast"] * 6


def test_the_fastest_is_chosen_and_the_machine_recorded() -> None:
    record = selection_record({"onnx": 15.0, "openvino-int8": 6.0}, {"onnx-int8": "why"})
    assert record["chosen"] == "openvino-int8"
    assert record["refused"] == {"onnx-int8": "why"}
    assert {"cpu_model", "cpu_flags", "cpu_count"} <= set(record["machine"])


def test_nothing_passed_is_an_error() -> None:
    with pytest.raises(ValueError, match="no runtime passed"):
        selection_record({}, {"onnx": "parity"})
