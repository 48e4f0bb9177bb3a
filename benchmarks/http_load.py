"""HTTP load generators: one request, a closed loop of N clients, and its figures.

Every generator is one event loop with ``clients`` tasks pulling from a shared request count:
on a 2-core machine a thread per client would take CPU away from the server being measured.
``measure_http`` replays one ``HttpCall`` and returns a :class:`benchmarks.measure.Run`;
``closed_loop`` runs any coroutine per call number (the feedback section's uploads); ``send``
is one synchronous request for paired turns.

Example:
    >>> call = HttpCall("GET", "http://127.0.0.1:8080/ping")
    >>> run = measure_http(call, requests=40, warmup=4, clients=4)  # doctest: +SKIP
    >>> run.p50_ms, run.throughput  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from benchmarks.counters import TorchServeCounters
from benchmarks.measure import Run

T = TypeVar("T")


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
