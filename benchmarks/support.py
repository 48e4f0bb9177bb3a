"""Measuring tools for ``python -m scripts.bench``: seeded test images, an in-process timer and an
asyncio HTTP load generator, with the figures (p50/p95, throughput) in one ``Run`` record.

The load generator is one event loop with ``clients`` tasks pulling from a shared request count:
on a 2-core machine a thread per client would take CPU away from the server being measured.
The feedback, hot-swap and retrain-loop sections add their pure helpers here: labels for
generated images (``feedback_boxes``, ``grid_boxes``), acknowledged rows counted back from the
CSV (``rows_by_column``, ``lost_rows``), retrain log times (``log_time``, ``step_durations``) and
swap windows (``overlaps``).

Example:
    >>> run = measure_callable(lambda: sum(range(1000)), requests=20, warmup=2)
    >>> run.requests, run.p50_ms > 0
    (20, True)
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from yoloserve.training.dataset import Shape, iter_images

IMAGE_SEED = 2024


def bench_image(size: int, seed: int = IMAGE_SEED, quality: int = 90) -> bytes:
    """A seeded synthetic shapes scene resized to ``size`` x ``size``, as JPEG bytes.

    Square on purpose: a square image letterboxes to the full ``imgsz`` square, the most
    expensive input shape, so the figures do not depend on the aspect ratio of one sample.
    """
    from PIL import Image

    image, _ = next(iter_images(1, seed))
    buffer = io.BytesIO()
    image.resize((size, size), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


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


@dataclass(frozen=True)
class HttpCall:
    """One kind of request, replayed by the load generator.

    ``stages`` picks the server-reported timings out of a 200 answer's JSON (None: none).
    """

    method: str
    url: str
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    headers: Mapping[str, str] | None = None
    stages: Callable[[Any], Mapping[str, float]] | None = None


async def _measure_http(call: HttpCall, requests: int, warmup: int, clients: int,
                        name: str, counters: TorchServeCounters | None) -> Run:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:

        async def once() -> tuple[float, httpx.Response]:
            t0 = time.perf_counter()
            response = await http.request(
                call.method, call.url, files=call.files, headers=call.headers
            )
            return (time.perf_counter() - t0) * 1e3, response

        # Warm every connection of the pool, so no timed request pays for a TCP handshake.
        for _ in range(max(warmup, 0) // max(clients, 1) + 1):
            await asyncio.gather(*(once() for _ in range(clients)))

        latencies: list[float] = []
        stages: list[Mapping[str, float]] = []
        errors: list[str] = []
        remaining = requests

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                ms, response = await once()
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    continue
                latencies.append(ms)
                if call.stages is not None:
                    stages.append(call.stages(response.json()))

        before = counters.read() if counters is not None else {}
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
        server = TorchServeCounters.means(before, counters.read()) if counters else {}
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} of {requests} requests failed: {errors[0]}")
    return Run(name, clients, latencies, wall, len(errors), stages, server)


def measure_http(call: HttpCall, requests: int, warmup: int, clients: int = 1,
                 name: str = "http", counters: TorchServeCounters | None = None) -> Run:
    """Send ``requests`` copies of ``call`` with ``clients`` concurrent clients.

    Each client keeps one keep-alive connection and sends its next request as soon as the
    previous answer arrives (closed loop), so ``clients`` is also the number of requests in
    flight. Throughput is successful requests over the wall time of the timed part. With
    ``counters``, the run also records TorchServe's own per-request frontend and queue times.

    Raises:
        RuntimeError: a request did not answer 200 (the first error is quoted).
    """
    return asyncio.run(_measure_http(call, requests, warmup, clients, name, counters))


def measure_paired(
    targets: Mapping[str, Callable[[], tuple[float, Mapping[str, float], Mapping[str, float]]]],
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


def send(http: httpx.Client, call: HttpCall) -> tuple[float, dict[str, Any]]:
    """One ``call`` with a sync client: latency in ms and the JSON answer.

    Raises:
        RuntimeError: the answer is not 200.
    """
    t0 = time.perf_counter()
    response = http.request(call.method, call.url, files=call.files, headers=call.headers)
    ms = (time.perf_counter() - t0) * 1e3
    if response.status_code != 200:
        raise RuntimeError(f"{call.url}: {response.status_code} {response.text[:200]}")
    return ms, response.json()


def prometheus_totals(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum each metric of ``names`` over all its label sets in a Prometheus text page."""
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            try:
                totals[name] += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return totals


class TorchServeCounters:
    """TorchServe's cumulative frontend counters, read before and after a run.

    ``ts_inference_latency_microseconds`` runs from the frontend receiving a request to it
    sending the answer, ``ts_queue_latency_microseconds`` is the part spent waiting for a worker
    (and for batch companions: ``maxBatchDelay``). Their deltas over a run, divided by the
    requests, split a client's latency into HTTP, queue, and worker time.
    """

    NAMES = (
        "ts_inference_requests_total",
        "ts_inference_latency_microseconds",
        "ts_queue_latency_microseconds",
    )

    def __init__(self, metrics_url: str) -> None:
        self.url = metrics_url.rstrip("/") + "/metrics"

    def read(self) -> dict[str, float]:
        """Current totals (zeros when the metrics API does not answer)."""
        try:
            text = httpx.get(self.url, timeout=5.0).text
        except httpx.HTTPError:
            return dict.fromkeys(self.NAMES, 0.0)
        return prometheus_totals(text, self.NAMES)

    @classmethod
    def means(cls, before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        """Per-request frontend and queue time (ms) between two readings."""
        n = after[cls.NAMES[0]] - before[cls.NAMES[0]]
        if n <= 0:
            return {}
        return {
            "frontend_ms": round((after[cls.NAMES[1]] - before[cls.NAMES[1]]) / n / 1e3, 2),
            "queue_ms": round((after[cls.NAMES[2]] - before[cls.NAMES[2]]) / n / 1e3, 2),
        }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (how busy the machine was)."""
    return os.getloadavg()


# ------------------------------------------------------------- feedback, hot swap, retrain loop

T = TypeVar("T")


async def _closed_loop(
    send: Callable[[httpx.AsyncClient, int], Awaitable[T]], total: int, clients: int,
    timeout: float,
) -> tuple[list[T], float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    results: list[T] = []
    counter = iter(range(total))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:

        async def client() -> None:
            # Each task takes the next call number until none is left: ``clients`` in flight.
            for i in counter:
                results.append(await send(http, i))

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return results, wall


def closed_loop(
    send: Callable[[httpx.AsyncClient, int], Awaitable[T]],
    total: int,
    clients: int,
    timeout: float = 120.0,
) -> tuple[list[T], float]:
    """Run ``send(http, i)`` for i in 0..total-1 with ``clients`` concurrent tasks.

    One event loop, one shared client with ``clients`` keep-alive connections; each task sends
    its next call when its last one returned. Returns every result (completion order) and the
    wall time in seconds. ``send`` decides what a result is (and whether an error raises).
    """
    return asyncio.run(_closed_loop(send, total, clients, timeout))


def feedback_boxes(shapes: Sequence[Shape]) -> list[dict[str, Any]]:
    """Ground-truth shapes of a generated image as the ``boxes`` of ``POST /feedback``."""
    return [{"xyxy": [round(v, 2) for v in s.xyxy], "name": s.name} for s in shapes]


def grid_boxes(width: int, height: int, n: int, names: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` disjoint boxes tiling the image in a near-square grid, class names in turn.

    Dense labels for a feedback load test: each box becomes one row of ``prod_data.csv``.
    """
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    w, h = width / cols, height / rows
    out = []
    for k in range(n):
        r, c = divmod(k, cols)
        # A 1 px margin keeps neighbours from touching (IoU 0 between any two of them).
        xyxy = [c * w + 1, r * h + 1, (c + 1) * w - 1, (r + 1) * h - 1]
        out.append({"xyxy": [round(v, 2) for v in xyxy], "name": names[k % len(names)]})
    return out


def rows_by_column(path: Path, column: str) -> Counter[str]:
    """Data rows of a CSV file per value of ``column`` (empty when the file is missing)."""
    counts: Counter[str] = Counter()
    if not path.is_file():
        return counts
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        index = header.index(column)
        for row in reader:
            counts[row[index]] += 1
    return counts


def lost_rows(acknowledged: Mapping[str, int], found: Mapping[str, int]) -> dict[str, int]:
    """Rows acknowledged (key -> rows_written) but missing from ``found``, per key.

    A key with more rows in the file than acknowledged is not a loss and is not listed.
    """
    return {key: n - found.get(key, 0) for key, n in acknowledged.items() if found.get(key, 0) < n}


_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")


def log_time(text: str, needle: str) -> float | None:
    """Epoch seconds of the first log line containing ``needle``; None if there is none.

    Lines are Python logging's default ``asctime`` (``2026-11-23 10:49:37,469 ...``), local
    time, as the retrain job writes them.
    """
    for line in text.splitlines():
        match = _LOG_TIME.match(line)
        if match and needle in line:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            return stamp.timestamp() + int(match.group(2)) / 1e3
    return None


def overlaps(start: float, end: float, windows: Sequence[tuple[float, float]]) -> bool:
    """Whether the interval [start, end] meets any of ``windows`` (closed intervals)."""
    return any(start <= w_end and w_start <= end for w_start, w_end in windows)


def spread(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """min / median / max of ``values`` (empty dict without values)."""
    if not values:
        return {}
    return {"min": round(float(min(values)), digits),
            "median": round(float(np.median(values)), digits),
            "max": round(float(max(values)), digits)}


def step_durations(marks: Mapping[str, float | None], digits: int = 1) -> dict[str, float | None]:
    """Seconds from the previous known time mark to each mark (None for an unknown mark).

    ``marks`` is ordered (insertion order); a mark that is None is skipped, so the next step runs
    from the last known one. Example: ``{"a": 0, "b": None, "c": 5}`` ->
    ``{"a": None, "b": None, "c": 5.0}``: the first known mark has no step before it.
    """
    out: dict[str, float | None] = {}
    last: float | None = None
    for name, t in marks.items():
        out[name] = None if t is None or last is None else round(t - last, digits)
        if t is not None:
            last = t
    return out
