"""benchmarks.http_load: the closed loop keeps at most ``clients`` calls in flight."""

from __future__ import annotations

import asyncio

import httpx

from benchmarks.http_load import closed_loop


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
