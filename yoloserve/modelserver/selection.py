"""``RUNTIME=auto``: which runtime answers fastest on this machine, among those that passed.

The packager stages every runtime, gates each (parity for the float ones, mAP for INT8), then
times the packed handlers that passed here, on the same real photos, interleaved round by round
so that a load spike costs every runtime alike, and keeps the lowest median. The choice is
recorded with the CPU it was measured on (``ModelVersion.selection``): another CPU may choose
otherwise (AMX, VNNI and the runtimes' kernels differ), which is why it is measured rather than
assumed.

Example:
    >>> timings = time_handlers({"a": lambda b: None, "b": lambda b: None}, [b"x"], rounds=2)
    >>> sorted(timings)
    ['a', 'b']
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from yoloserve.machine import describe

ROUNDS = 20  # timed calls per runtime, after the warm-up
WARMUP = 2  # calls per image before timing: first calls build kernels


def time_handlers(
    handlers: Mapping[str, Callable[[bytes], Any]],
    images: Sequence[bytes],
    *,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
) -> dict[str, float]:
    """Median milliseconds of one request per handler, interleaved.

    Args:
        handlers: name -> a call answering one encoded image.
        images: the encoded images, used in turn.
        rounds: timed calls per handler.
        warmup: untimed calls per handler and image first.
    """
    for handler in handlers.values():
        for image in images:
            for _ in range(warmup):
                handler(image)
    samples: dict[str, list[float]] = {name: [] for name in handlers}
    for turn in range(rounds):
        image = images[turn % len(images)]
        for name, handler in handlers.items():
            started = time.perf_counter()
            handler(image)
            samples[name].append((time.perf_counter() - started) * 1e3)
    return {name: round(statistics.median(values), 2) for name, values in samples.items()}


def selection_record(
    timings: Mapping[str, float], refused: Mapping[str, str], *, rounds: int = ROUNDS,
    accuracy: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """What ``auto`` chose and why: ``{"chosen", "p50_ms", "refused", "rounds", "machine",
    "accuracy"}``, ``accuracy`` being each gated runtime's mAP on the benchmark set (when given).

    Raises:
        ValueError: no runtime passed its gate.
    """
    if not timings:
        raise ValueError("no runtime passed its gate")
    chosen = min(timings, key=lambda name: timings[name])
    return {"chosen": chosen, "p50_ms": dict(timings), "refused": dict(refused),
            "rounds": rounds, "machine": describe(),
            "accuracy": {name: dict(scores) for name, scores in (accuracy or {}).items()}}
