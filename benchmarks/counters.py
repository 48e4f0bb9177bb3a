"""TorchServe's own view of a request: its Prometheus counters, read before and after.

The client's clock sees HTTP, queueing and the worker together; TorchServe's cumulative
frontend counters split them. ``TorchServeCounters(metrics_url).read()`` takes one reading,
``TorchServeCounters.means(before, after)`` turns two readings into per-request frontend and
queue milliseconds.

Example:
    >>> text = 'ts_inference_requests_total{model_name="yolo",} 2.0\\n'
    >>> prometheus_totals(text, ("ts_inference_requests_total",))
    {'ts_inference_requests_total': 2.0}
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx


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
