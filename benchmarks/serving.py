"""The serving section: in-process Ultralytics vs TorchServe vs the gateway, per image size.

Per image size (seeded synthetic scenes resized to a square, JPEG) it measures:

  raw         YOLO(weights).predict(jpeg_file, imgsz=...) in this process, with the same torch
              thread count as one TorchServe worker (handler.torch_threads; 0 = one per core)
  torchserve  POST /predictions/yolo, multipart part `data` (what the gateway sends)
  gateway     POST /predict, multipart part `file`, end to end

and prints p50/p95 latency (1 client), the ratio to raw, throughput with 1 and N concurrent
clients, and where a lone request's time goes (client clock, the gateway's and the handler's
``timing_ms``, TorchServe's frontend and queue counters). Latency is measured in paired turns
(one request of each target in rotating order), so that a machine shared with other jobs slows
all targets alike; throughput in closed loops, in rounds that interleave the targets.

    python -m benchmarks --sections serving --requests 60 --sizes 640,320
    python -m benchmarks --sections serving --set batchSize=1 --set handler.torch_threads=1
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.table import Table

from benchmarks.context import BenchContext
from benchmarks.counters import TorchServeCounters
from benchmarks.http_load import HttpCall, measure_http, send
from benchmarks.measure import Run, Turn, measure_callable, measure_paired, merge_runs
from yoloserve.modelserver.packaging import MODEL_NAME

# Goals of the serving section (issue 2): the stack adds at most 10 % to a lone request at
# 640 px, and concurrent clients get at least the throughput of raw sequential predict.
GOAL_P50_RATIO = 1.10
GOAL_THROUGHPUT_RATIO = 1.0


def raw_predictor(ctx: BenchContext) -> Callable[[Path], object]:
    """``YOLO(weights).predict`` with the worker's thread count, loaded once per bench run."""
    if "raw" not in ctx.cache:
        import torch
        from ultralytics import YOLO

        model = YOLO(str(ctx.stack.weights))
        conf = float(ctx.handler_config.get("conf", 0.25))
        iou = float(ctx.handler_config.get("iou", 0.7))

        def predict(path: Path) -> object:
            return model.predict(str(path), imgsz=ctx.imgsz, conf=conf, iou=iou, verbose=False)

        # The first predict builds the predictor, whose select_device() sets torch's threads to
        # cpu_count - 1; the worker sets its own count after loading, so we do the same here.
        predict(next(iter(ctx.image_files.values())))
        torch.set_num_threads(ctx.raw_torch_threads)
        ctx.cache["raw"] = predict
    predictor: Callable[[Path], object] = ctx.cache["raw"]
    return predictor


def _handler_stages(body: Any) -> Mapping[str, float]:
    return dict(body.get("timing_ms") or {})


def _gateway_stages(body: Any) -> Mapping[str, float]:
    # The gateway's timing_ms may hold non-numeric entries; only times are stages.
    timing = body.get("timing_ms") or {}
    return {k: v for k, v in timing.items() if isinstance(v, int | float)}


def serving_calls(ctx: BenchContext, image: bytes) -> dict[str, HttpCall]:
    """The two HTTP requests of the serving section for one image."""
    ts = ctx.stack.torchserve
    return {
        "torchserve": HttpCall(
            "POST",
            f"{ts.inference_url}/predictions/{MODEL_NAME}",
            files={"data": ("image", image, "application/octet-stream")},
            stages=_handler_stages,
        ),
        "gateway": HttpCall(
            "POST",
            f"{ctx.stack.gateway_url}/predict",
            files={"file": ("bench.jpg", image, "image/jpeg")},
            headers=ctx.auth,
            stages=_gateway_stages,
        ),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _paired_latency(ctx: BenchContext, size: int, http: httpx.Client) -> dict[str, Run]:
    predict, path = raw_predictor(ctx), ctx.image_files[size]
    calls = serving_calls(ctx, ctx.images[size])
    counters = TorchServeCounters(ctx.stack.torchserve.metrics_url)

    def raw() -> Turn:
        t0 = time.perf_counter()
        results: Any = predict(path)
        return (time.perf_counter() - t0) * 1e3, dict(results[0].speed), {}

    def over_http(call: HttpCall) -> Callable[[], Turn]:
        def once() -> Turn:
            before = counters.read()  # outside the timed part; TorchServe's own view of it
            ms, body = send(http, call)
            stages = call.stages(body) if call.stages is not None else {}
            return ms, stages, TorchServeCounters.means(before, counters.read())

        return once

    targets = {"raw": raw, **{f"{name}@1": over_http(call) for name, call in calls.items()}}
    return measure_paired(targets, ctx.requests, ctx.warmup)


def _serving_size(ctx: BenchContext, size: int) -> dict[str, Any]:
    with httpx.Client(timeout=120.0) as http:
        runs = _paired_latency(ctx, size, http)
    # Throughput: blocks of raw sequential predict and of N concurrent clients, in rounds that
    # interleave them, so that a change of background load hits all of them alike.
    predict, path = raw_predictor(ctx), ctx.image_files[size]
    calls = serving_calls(ctx, ctx.images[size])
    rounds: dict[str, list[Run]] = {}
    per_round = max(1, ctx.requests // ctx.rounds)
    for _ in range(ctx.rounds):
        rounds.setdefault("raw-sequential", []).append(
            measure_callable(lambda: predict(path), per_round, 1, "raw-sequential")
        )
        for name, call in calls.items():
            rounds.setdefault(f"{name}@{ctx.clients}", []).append(
                measure_http(call, per_round, ctx.warmup, ctx.clients, name)
            )
    runs.update({key: merge_runs(value) for key, value in rounds.items()})
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    out: dict[str, Any] = {"image_bytes": len(ctx.images[size]), "runs": {}}
    for key, run in runs.items():
        out["runs"][key] = run.summary()
    out["ratios"] = {
        name: {
            # Against the raw loop (the usual benchmark figure, and the stricter one: a tight
            # loop keeps caches and OpenMP threads hot, which turns between requests do not).
            "p50_vs_raw": _ratio(runs[f"{name}@1"].p50_ms, raw_seq.p50_ms),
            "p95_vs_raw": _ratio(runs[f"{name}@1"].p95_ms, raw_seq.p95_ms),
            # Median of the per-turn ratios: robust to load that moves both figures.
            "paired_median_vs_raw": round(float(np.median(
                np.array(runs[f"{name}@1"].latencies_ms) / np.array(raw.latencies_ms)
            )), 3),
            f"throughput_{ctx.clients}_vs_raw_sequential": _ratio(
                runs[f"{name}@{ctx.clients}"].throughput, raw_seq.throughput
            ),
        }
        for name in calls
    }
    _print_serving(ctx, size, runs, out["ratios"])
    return out


def _breakdown(runs: dict[str, Run]) -> Table:
    """Where a lone request's time goes, from the client's clock and the servers' own."""
    raw, ts, gw = runs["raw"], runs["torchserve@1"], runs["gateway@1"]
    raw_stages, handler = raw.stage_means(), ts.stage_means()
    handler_sum = sum(handler.get(k, 0.0) for k in ("preprocess", "inference", "postprocess"))
    ts_front, ts_queue = ts.server.get("frontend_ms", 0.0), ts.server.get("queue_ms", 0.0)
    gw_stages = gw.stage_means()
    gw_total, gw_model = gw_stages.get("total", 0.0), gw_stages.get("model", 0.0)
    gw_front = gw.server.get("frontend_ms", 0.0)
    table = Table(title="where a lone request's time goes (mean ms, 1 client)")
    for column in ("stage", "raw", "torchserve", "gateway"):
        table.add_column(column, justify="left" if column == "stage" else "right")

    def row(stage: str, *values: float | None) -> None:
        table.add_row(stage, *("" if v is None else f"{v:.1f}" for v in values))

    row("client round trip / predict() call", raw.mean_ms, ts.mean_ms, gw.mean_ms)
    row("  client + uvicorn (outside the route)", None, None, gw.mean_ms - gw_total)
    row("  gateway route (upload checks, JSON)", None, None, gw_total - gw_model)
    row("  client/gateway -> TorchServe HTTP", None, ts.mean_ms - ts_front, gw_model - gw_front)
    row("  TorchServe frontend, receive -> answer", None, ts_front, gw_front)
    row("    queue + batch wait (maxBatchDelay)", None, ts_queue, gw.server.get("queue_ms"))
    row("    worker IPC + protocol + JSON", None, ts_front - ts_queue - handler_sum, None)
    for stage in ("preprocess", "inference", "postprocess"):
        row(f"    {stage} (handler / Ultralytics speed)", raw_stages.get(stage),
            handler.get(stage), None)
    return table


def _print_serving(
    ctx: BenchContext, size: int, runs: dict[str, Run], ratios: dict[str, dict[str, float]]
) -> None:
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    table = Table(title=f"serving, {size}x{size} px JPEG ({len(ctx.images[size]) // 1024} KiB), "
                        f"imgsz {ctx.imgsz}, {raw.requests} requests per figure")
    for column in ("target", "p50 ms", "p95 ms", "p50 / raw", "paired / raw", "req/s 1 client",
                   f"req/s {ctx.clients} clients", f"{ctx.clients} clients / raw seq"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("raw, loop", f"{raw_seq.p50_ms:.1f}", f"{raw_seq.p95_ms:.1f}", "1.00", "",
                  f"{raw_seq.throughput:.2f}", "", "1.00")
    table.add_row("raw, paired turns", f"{raw.p50_ms:.1f}", f"{raw.p95_ms:.1f}",
                  f"{raw.p50_ms / raw_seq.p50_ms:.2f}", "1.00", f"{raw.throughput:.2f}", "", "")
    for name in ("torchserve", "gateway"):
        one, many = runs[f"{name}@1"], runs[f"{name}@{ctx.clients}"]
        ratio = ratios[name]
        table.add_row(name, f"{one.p50_ms:.1f}", f"{one.p95_ms:.1f}",
                      f"{ratio['p50_vs_raw']:.2f}", f"{ratio['paired_median_vs_raw']:.2f}",
                      f"{one.throughput:.2f}", f"{many.throughput:.2f}",
                      f"{ratio[f'throughput_{ctx.clients}_vs_raw_sequential']:.2f}")
    ctx.console.print(table)
    ctx.console.print(_breakdown(runs))
    gateway = ratios["gateway"]
    ctx.console.print(
        f"  goals: gateway p50 / raw p50 = {gateway['p50_vs_raw']:.2f} (paired "
        f"{gateway['paired_median_vs_raw']:.2f}; goal <= {GOAL_P50_RATIO} at 640 px); gateway "
        f"{ctx.clients} clients / raw sequential throughput = "
        f"{gateway[f'throughput_{ctx.clients}_vs_raw_sequential']:.2f} "
        f"(goal >= {GOAL_THROUGHPUT_RATIO})"
    )


def warm_stack(ctx: BenchContext, requests: int = 40) -> None:
    """Send ``requests`` untimed gateway requests per bench image, with several clients."""
    # The Java frontend runs interpreted until its JIT has seen a few hundred requests, and
    # every worker builds its kernels on first use: warm all of it once, through the gateway,
    # so the first figure is not the slow one.
    for size, image in ctx.images.items():
        measure_http(serving_calls(ctx, image)["gateway"], requests, 0, max(ctx.clients, 2),
                     f"warm-up {size}")


def serving_section(ctx: BenchContext) -> dict[str, Any]:
    """Raw vs TorchServe vs gateway, latency and throughput, per image size."""
    ctx.console.print(f"[bold]serving[/bold]: raw in-process with {ctx.raw_torch_threads} torch "
                      f"threads; each TorchServe worker has {ctx.torch_threads}")
    warm_stack(ctx)
    return {
        "worker_torch_threads": ctx.torch_threads,
        "raw_torch_threads": ctx.raw_torch_threads,
        "imgsz": ctx.imgsz,
        "sizes": {str(size): _serving_size(ctx, size) for size in ctx.images},
    }


def serving_markdown(report: dict[str, Any], serving: dict[str, Any]) -> list[str]:
    """The serving figures of a report as one Markdown table (all sizes, all targets)."""
    clients = report["options"]["clients"]
    lines = [
        f"Worker torch threads {serving['worker_torch_threads']}, raw in-process "
        f"{serving['raw_torch_threads']}; imgsz {serving['imgsz']}.",
        "",
        f"| image | target | p50 ms | p95 ms | p50 / raw | paired / raw | req/s 1 client | "
        f"req/s {clients} clients | {clients} clients / raw seq |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, figures in serving["sizes"].items():
        runs, ratios = figures["runs"], figures["ratios"]
        raw, seq = runs["raw"], runs["raw-sequential"]
        lines.append(f"| {size} px | raw, loop | {seq['p50_ms']:.1f} | {seq['p95_ms']:.1f} | "
                     f"1.00 | | {seq['throughput_rps']:.2f} | | 1.00 |")
        lines.append(f"| {size} px | raw, paired turns | {raw['p50_ms']:.1f} | "
                     f"{raw['p95_ms']:.1f} | {raw['p50_ms'] / seq['p50_ms']:.2f} | 1.00 | "
                     f"{raw['throughput_rps']:.2f} | | |")
        for name in ("torchserve", "gateway"):
            one, many = runs[f"{name}@1"], runs[f"{name}@{clients}"]
            ratio = ratios[name]
            lines.append(
                f"| {size} px | {name} | {one['p50_ms']:.1f} | {one['p95_ms']:.1f} | "
                f"{ratio['p50_vs_raw']:.2f} | {ratio['paired_median_vs_raw']:.2f} | "
                f"{one['throughput_rps']:.2f} | "
                f"{many['throughput_rps']:.2f} | "
                f"{ratio[f'throughput_{clients}_vs_raw_sequential']:.2f} |"
            )
    return lines
