"""Figures of a measurement and the in-process timers that produce them.

``Run`` holds the latency of every request and the wall time of a run, and computes p50/p95,
throughput and the mean of the server-reported stages; ``measure_callable`` times a function
back to back, ``measure_paired`` times several targets in rotating turns, ``merge_runs`` pools
rounds of one measurement, ``spread`` gives min / median / max. The HTTP load generators that
also return a ``Run`` are in :mod:`benchmarks.http_load`.

Example:
    >>> run = measure_callable(lambda: sum(range(1000)), requests=20, warmup=2)
    >>> run.requests, run.p50_ms > 0
    (20, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# One request of a paired target: its latency (ms), its server-reported stages and its
# server-side means (TorchServe's counters read around it).
Turn = tuple[float, Mapping[str, float], Mapping[str, float]]


@dataclass
class Run:
    """Figures of one measurement: latencies of each request, wall time of the whole run.

    ``stages`` holds server-reported per-request times (the handler's ``timing_ms``, the
    gateway's ``timing_ms``), averaged in :meth:`summary`.
    """

    name: str
    clients: int
    latencies_ms: list[float]
    wall_s: float
    errors: int = 0
    stages: list[Mapping[str, float]] = field(default_factory=list)
    server: dict[str, float] = field(default_factory=dict)  # server-side means over the run

    @property
    def requests(self) -> int:
        """Requests that succeeded."""
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0..100) in ms; NaN without data."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def p50_ms(self) -> float:
        """Median latency."""
        return self.percentile(50)

    @property
    def p95_ms(self) -> float:
        """95th percentile latency."""
        return self.percentile(95)

    @property
    def mean_ms(self) -> float:
        """Mean latency; 0 without data (a breakdown row then reads 0, not NaN)."""
        return float(sum(self.latencies_ms) / len(self.latencies_ms)) if self.latencies_ms else 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second over the run's wall time."""
        return self.requests / self.wall_s if self.wall_s > 0 else float("nan")

    def stage_means(self) -> dict[str, float]:
        """Mean of each server-reported stage over the requests that reported it."""
        keys = sorted({key for stage in self.stages for key in stage})
        out = {}
        for key in keys:
            values = [float(s[key]) for s in self.stages if isinstance(s.get(key), int | float)]
            if values:
                out[key] = round(float(np.mean(values)), 2)
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (the raw latencies included, for later analysis)."""
        return {
            "name": self.name,
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "mean_ms": round(float(np.mean(self.latencies_ms)), 2) if self.latencies_ms else None,
            "throughput_rps": round(self.throughput, 3),
            "wall_s": round(self.wall_s, 3),
            "stages_mean_ms": self.stage_means(),
            "server_mean_ms": self.server,
            "latencies_ms": [round(v, 3) for v in self.latencies_ms],
        }


def merge_runs(runs: Sequence[Run]) -> Run:
    """Several rounds of one measurement as one run (latencies pooled, wall times added).

    Server-side means are weighted by each round's requests, over the rounds that have them.
    """
    first = runs[0]
    keys = {key for run in runs for key in run.server}
    server = {
        key: round(sum(r.server.get(key, 0.0) * r.requests for r in runs)
                   / max(1, sum(r.requests for r in runs if key in r.server)), 2)
        for key in keys
    }
    return Run(
        first.name,
        first.clients,
        [ms for run in runs for ms in run.latencies_ms],
        sum(run.wall_s for run in runs),
        sum(run.errors for run in runs),
        [stage for run in runs for stage in run.stages],
        server,
    )


def measure_callable(
    fn: Callable[[], Any],
    requests: int,
    warmup: int,
    name: str = "callable",
    stages: Callable[[Any], Mapping[str, float]] | None = None,
) -> Run:
    """Call ``fn`` ``warmup`` times untimed, then ``requests`` times back to back.

    ``stages`` picks per-call stage times out of ``fn``'s result (e.g. Ultralytics' ``speed``).
    """
    for _ in range(warmup):
        fn()
    latencies, recorded = [], []
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        result = fn()
        latencies.append((time.perf_counter() - t0) * 1e3)
        if stages is not None:
            recorded.append(stages(result))
    return Run(name, 1, latencies, time.perf_counter() - start, stages=recorded)


def measure_paired(
    targets: Mapping[str, Callable[[], Turn]],
    requests: int,
    warmup: int,
) -> dict[str, Run]:
    """Latency of several targets, one request of each in turn (paired), one client.

    On a machine shared with other jobs the load changes from second to second; measuring
    target after target in blocks lets a busy second hit one of them only. Taking one request of
    each in turn (rotating the order) puts every target under the same conditions, so their
    ratio holds even when the absolute figures move.

    Args:
        targets: name -> call that performs one request and returns its latency (ms), its
            server-reported stages and its server-side means.
        requests: timed requests per target.
        warmup: untimed requests per target first.

    Returns:
        One ``Run`` per target (``wall_s`` is the sum of its latencies: 1 client).
    """
    names = list(targets)
    for _ in range(warmup):
        for name in names:
            targets[name]()
    latencies: dict[str, list[float]] = {name: [] for name in names}
    stages: dict[str, list[Mapping[str, float]]] = {name: [] for name in names}
    servers: dict[str, list[Mapping[str, float]]] = {name: [] for name in names}
    for i in range(requests):
        for name in names[i % len(names):] + names[: i % len(names)]:
            ms, stage, server = targets[name]()
            latencies[name].append(ms)
            stages[name].append(stage)
            servers[name].append(server)
    runs = {}
    for name in names:
        keys = {key for server in servers[name] for key in server}
        server_means = {
            key: round(float(np.mean([s[key] for s in servers[name] if key in s])), 2)
            for key in keys
        }
        runs[name] = Run(name, 1, latencies[name], sum(latencies[name]) / 1e3,
                         stages=stages[name], server=server_means)
    return runs


def spread(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """min / median / max of ``values`` (empty dict without values)."""
    if not values:
        return {}
    return {"min": round(float(min(values)), digits),
            "median": round(float(np.median(values)), digits),
            "max": round(float(max(values)), digits)}
