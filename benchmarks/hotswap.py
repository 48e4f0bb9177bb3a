"""The hotswap section: failed requests and latency while two versions swap under load.

The bench packages the served weights again as a second version (the swap is what is measured,
not the model), starts N closed-loop clients on the gateway's ``POST /predict`` (the smallest
bench image, one event loop on its own thread), then swaps v1 -> v2 -> v1 ... with
``yoloserve.modelserver.deploy.hot_swap_sync`` until the clients sent ``--hotswap-requests``
(always an even number of swaps, so v1 serves at the end). It reports the failed requests, the
swap durations, latency of the requests that met a swap and of those that did not, and the
answers still from the old version after a swap returned.

Where the slow requests come from: the swap's own HTTP calls are timed (a recording transport
under ``hot_swap_sync``), which splits each swap into phases: ``loading`` (register until the
last worker poll saw READY), ``warm-up`` (the pinned warm-up predictions), ``drain`` (set-default
until the old version is unregistered). Every request over 1 s is counted by the phase it
started in and the version that answered it. With ``--hotswap-ab`` the swaps alternate in pairs
between no warm-up and ``--hotswap-warmup`` predictions, so one run on one (loaded) machine
gives both figures side by side.

    python -m benchmarks --sections hotswap --hotswap-requests 2000 --hotswap-clients 8
    python -m benchmarks --sections hotswap --hotswap-ab        # cold and warm swaps, one run
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from rich.table import Table

from benchmarks.context import BenchContext
from benchmarks.http_load import HttpCall
from benchmarks.measure import spread
from benchmarks.serving import serving_calls
from benchmarks.timeline import overlaps
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.deploy import hot_swap_sync
from yoloserve.modelserver.packaging import package


@dataclass(frozen=True)
class Outcome:
    """One request of a background load: when it started and ended (perf_counter), its answer."""

    start: float
    end: float
    status: int
    version: str | None
    error: str | None = None


class BackgroundLoad:
    """``clients`` closed-loop clients replaying ``call`` on their own event loop and thread,
    until stopped; the main thread is free to run synchronous swaps meanwhile."""

    def __init__(self, call: HttpCall, clients: int) -> None:
        self.call, self.clients = call, clients
        self.outcomes: list[Outcome] = []  # appended by the loop's thread only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.clients,
                              max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:

            async def client() -> None:
                while not self._stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        r = await http.request(self.call.method, self.call.url,
                                               files=self.call.files, headers=self.call.headers)
                        outcome = Outcome(t0, time.perf_counter(), r.status_code,
                                          r.headers.get("X-Model-Version"),
                                          None if r.status_code == 200 else r.text[:300])
                    except httpx.HTTPError as exc:
                        outcome = Outcome(t0, time.perf_counter(), 0, None, repr(exc))
                    self.outcomes.append(outcome)

            await asyncio.gather(*(client() for _ in range(self.clients)))

    def count_since(self, t: float) -> int:
        """Requests that started at or after ``t``."""
        return sum(1 for o in list(self.outcomes) if o.start >= t)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(180)


@dataclass(frozen=True)
class Call:
    """One HTTP call the swap made (perf_counter times)."""

    method: str
    path: str
    start: float
    end: float


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network, with every call's method, path and times kept in ``calls``."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[Call] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.calls.append(Call(request.method, request.url.path, t0, time.perf_counter()))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class Swap:
    """One swap: its target, wall interval, warm-up size and phase marks (perf_counter)."""

    target: str
    start: float
    end: float
    warmup: int
    marks: dict[str, float] = field(default_factory=dict)

    def phase_at(self, t: float) -> str:
        """``loading``, ``warm-up``, ``drain`` inside the swap; ``outside`` before or after."""
        if not self.start <= t <= self.end:
            return "outside"
        ready = self.marks.get("ready", self.start)
        default = self.marks.get("set_default", ready)
        return "loading" if t < ready else "warm-up" if t < default else "drain"


def swap_marks(calls: list[Call], target: str, model: str) -> dict[str, float]:
    """Phase marks of one swap from its calls: READY seen, set-default answered, old unloaded."""
    polls = [c.end for c in calls if c.method == "GET" and c.path == f"/models/{model}/{target}"]
    default = [c.end for c in calls if c.method == "PUT" and c.path.endswith("/set-default")]
    unloaded = [c.end for c in calls if c.method == "DELETE"]
    marks = {"ready": max(polls)} if polls else {}
    if default:
        marks["set_default"] = default[0]
    if unloaded:
        marks["unregistered"] = max(unloaded)
    return marks


def slow_by_phase(outcomes: list[Outcome], swaps: list[Swap],
                  limit_s: float = 1.0) -> dict[str, int]:
    """Requests over ``limit_s``: ``"<phase it started in> -> v<answering version>": count``."""
    counts: Counter[str] = Counter()
    for o in outcomes:
        if o.status == 200 and o.end - o.start > limit_s:
            phase = next((s.phase_at(o.start) for s in swaps if s.start <= o.start <= s.end),
                         "outside")
            counts[f"{phase} -> v{o.version}"] += 1
    return dict(sorted(counts.items()))


def latency_figures(outcomes: list[Outcome]) -> dict[str, Any]:
    ms = [(o.end - o.start) * 1e3 for o in outcomes if o.status == 200]
    if not ms:
        return {"requests": len(outcomes)}
    return {"requests": len(outcomes), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(max(ms)), 1),
            "over_1s": sum(1 for v in ms if v > 1000.0)}


def stale_answers(outcomes: list[Outcome], swaps: list[tuple[str, float, float]],
                   t_end: float) -> int:
    """200 answers from another version than the last swap's, between that swap and the next."""
    stale = 0
    for k, (target, _, t1) in enumerate(swaps):
        until = swaps[k + 1][1] if k + 1 < len(swaps) else t_end
        stale += sum(1 for o in outcomes
                     if t1 < o.start and o.end < until and o.status == 200
                     and o.version != target)
    return stale


def hotswap_section(ctx: BenchContext) -> dict[str, Any]:
    """Failed requests while versions are hot-swapped back and forth under concurrent load."""
    opts, stack = ctx.options, ctx.stack
    registry = stack.registry
    first = registry.load().default_version
    if first is None:
        raise RuntimeError("the bench registry has no default version")
    # The same weights packaged again as another version: the swap is what is measured.
    second = package(stack.weights, registry, store_dir=stack.store_dir, reuse=False).version
    size = min(ctx.images)
    call = serving_calls(ctx, ctx.images[size])["gateway"]
    urls = (stack.torchserve.management_url, stack.torchserve.inference_url)
    ctx.console.print(f"[bold]hotswap[/bold]: {opts.hotswap_clients} clients on /predict "
                      f"({size} px) while v{first} <-> v{second} swap, until "
                      f">= {opts.hotswap_requests} requests")
    timed: list[Swap] = []
    with BackgroundLoad(call, opts.hotswap_clients) as load:
        while len(load.outcomes) < 20:  # the clients' connections and the JIT are warm
            time.sleep(0.2)
        t_start = time.perf_counter()
        try:
            while (load.count_since(t_start) < opts.hotswap_requests or len(timed) % 2
                   or len(timed) < (4 if opts.hotswap_ab else 2)):
                target = (second, first)[len(timed) % 2]
                # A/B: pairs of swaps without warm-up, then pairs with it, and so on.
                warmup = 0 if opts.hotswap_ab and len(timed) % 4 < 2 else opts.hotswap_warmup
                recorder = RecordingTransport()
                t0 = time.perf_counter()
                hot_swap_sync(*urls, registry, target, drain_s=opts.hotswap_drain,
                              warmup_requests=warmup, transport=recorder)
                timed.append(Swap(target, t0, time.perf_counter(), warmup,
                                  swap_marks(recorder.calls, target, MODEL_NAME)))
                ctx.console.print(f"  swap {len(timed)} to v{target} (warm-up {warmup}): "
                                  f"{timed[-1].end - t0:.1f} s, "
                                  f"{load.count_since(t_start)} requests so far")
                time.sleep(opts.hotswap_pause)
        finally:
            if registry.load().default_version != first:  # a failed swap: leave v1 serving
                hot_swap_sync(*urls, registry, first, drain_s=opts.hotswap_drain)
        t_end = time.perf_counter()
    swaps = [(s.target, s.start, s.end) for s in timed]
    outcomes = [o for o in load.outcomes if t_start <= o.start <= t_end]
    failed = [o for o in outcomes if o.status != 200]
    windows = [(t0, t1) for _, t0, t1 in swaps]
    during = [o for o in outcomes if overlaps(o.start, o.end, windows)]
    between = [o for o in outcomes if not overlaps(o.start, o.end, windows)]
    # After a swap returned, every answer should come from its version (the old one drained).
    stale = stale_answers(outcomes, swaps, t_end)
    out: dict[str, Any] = {
        "clients": opts.hotswap_clients,
        "image_px": size,
        "drain_s": opts.hotswap_drain,
        "pause_s": opts.hotswap_pause,
        "versions": [first, second],
        "swaps": len(swaps),
        "swap_s": spread([t1 - t0 for _, t0, t1 in swaps]),
        "requests": len(outcomes),
        "failed": len(failed),
        "first_failures": [f"{o.status} {o.error}" for o in failed[:3]],
        "wall_s": round(t_end - t_start, 1),
        "throughput_rps": round(len(outcomes) / (t_end - t_start), 2),
        "share_of_time_swapping": round(sum(t1 - t0 for t0, t1 in windows) / (t_end - t_start), 3),
        "stale_answers_after_swap": stale,
        "latency_all": latency_figures(outcomes),
        "latency_during_swaps": latency_figures(during),
        "latency_between_swaps": latency_figures(between),
        "warmup_requests": opts.hotswap_warmup,
        "slow_by_phase": slow_by_phase(outcomes, timed),
        "phase_s": _phase_seconds(timed),
        "by_warmup": {str(n): _group_figures(outcomes, [s for s in timed if s.warmup == n])
                      for n in sorted({s.warmup for s in timed})},
    }
    _print_hotswap(ctx, out)
    return out


def _group_figures(outcomes: list[Outcome], swaps: list[Swap]) -> dict[str, Any]:
    """Latency of the requests that met one of ``swaps``, and where their slow ones started."""
    met = [o for o in outcomes if overlaps(o.start, o.end, [(s.start, s.end) for s in swaps])]
    return {"swaps": len(swaps), "latency_during_swaps": latency_figures(met),
            "slow_by_phase": slow_by_phase(met, swaps)}


def _phase_seconds(swaps: list[Swap]) -> dict[str, dict[str, float]]:
    """Median seconds of each phase over the swaps."""
    spans: dict[str, list[float]] = {"loading": [], "warm-up": [], "drain": []}
    for s in swaps:
        ready = s.marks.get("ready")
        default = s.marks.get("set_default")
        if ready is not None:
            spans["loading"].append(ready - s.start)
        if ready is not None and default is not None:
            spans["warm-up"].append(default - ready)
        if default is not None:
            spans["drain"].append(s.marks.get("unregistered", s.end) - default)
    return {name: spread(values) for name, values in spans.items()}


def _print_hotswap(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"hot swap: {out['swaps']} swaps, {out['requests']} requests, "
                        f"{out['failed']} failed")
    for column in ("requests", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "> 1 s"):
        table.add_column(column, justify="left" if column == "requests" else "right")
    for name in ("all", "during_swaps", "between_swaps"):
        f = out[f"latency_{name}"]
        table.add_row(name.replace("_", " "), str(f["requests"]),
                      *(str(f.get(key)) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms",
                                                    "over_1s")))
    ctx.console.print(table)
    ctx.console.print(f"  swap duration s {out['swap_s']}; goal: 0 failed of >= "
                      f"{ctx.options.hotswap_requests}: {out['failed']} of {out['requests']}; "
                      f"{out['stale_answers_after_swap']} answers from the old version after a "
                      "swap returned")
    ctx.console.print(f"  phases (s): {out['phase_s']}; requests over 1 s by the phase they "
                      f"started in -> the version that answered: {out['slow_by_phase']}")
    for n, group in out["by_warmup"].items():
        f = group["latency_during_swaps"]
        ctx.console.print(f"  warm-up {n}: {group['swaps']} swaps, during them p50/p99/max "
                          f"{f.get('p50_ms')}/{f.get('p99_ms')}/{f.get('max_ms')} ms, "
                          f"{f.get('over_1s')} over 1 s {group['slow_by_phase']}")


def hotswap_markdown(report: dict[str, Any], hotswap: dict[str, Any]) -> list[str]:
    """The hot-swap figures of a report: one summary sentence and a latency table."""
    swap = hotswap["swap_s"]
    lines = [
        "",
        f"Hot swap: {hotswap['clients']} clients on `POST /predict` ({hotswap['image_px']} px), "
        f"{hotswap['swaps']} swaps v{hotswap['versions'][0]} <-> v{hotswap['versions'][1]} "
        f"(drain {hotswap['drain_s']} s, {hotswap['pause_s']} s between swaps) over "
        f"{hotswap['wall_s']} s, {hotswap['share_of_time_swapping']:.0%} of it inside a swap: "
        f"**{hotswap['failed']} failed of {hotswap['requests']}**; swap duration "
        f"{swap.get('min')} / {swap.get('median')} / {swap.get('max')} s (min / median / max); "
        f"{hotswap['stale_answers_after_swap']} answers from the old version after a swap "
        f"returned; {hotswap['throughput_rps']} req/s overall.",
        "",
        "| requests | count | p50 ms | p95 ms | p99 ms | max ms | over 1 s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(name.replace("_", " "), hotswap[f"latency_{name}"])
            for name in ("all", "during_swaps", "between_swaps")]
    rows += [(f"during swaps with warm-up {n} ({group['swaps']} swaps)",
              group["latency_during_swaps"])
             for n, group in hotswap.get("by_warmup", {}).items()]
    for name, f in rows:
        lines.append(f"| {name} | {f['requests']} | {f.get('p50_ms')} | "
                     f"{f.get('p95_ms')} | {f.get('p99_ms')} | {f.get('max_ms')} | "
                     f"{f.get('over_1s')} |")
    if "slow_by_phase" in hotswap:
        lines += ["", f"Phases, median s: {hotswap['phase_s']}. Requests over 1 s by the phase "
                      f"they started in -> the version that answered: {hotswap['slow_by_phase']}."]
    return lines
