"""The serving section: in-process Ultralytics vs TorchServe vs the gateway, per image.

Images: seeded synthetic scenes resized to a square (JPEG) per ``--sizes``, and two real photos
(a 640x427 JPEG and a 600x400 PNG bundled with scikit-image, sent as they are). Per image:

  raw          YOLO(weights).predict(file) in this process with Ultralytics' defaults (the
               model's own imgsz; predict leaves torch 1 thread on a 2-core box): what a user
               who calls Ultralytics themselves gets, and the baseline of the goals
  raw-threads  the same with the torch thread count of one TorchServe worker (stricter)
  torchserve   POST /predictions/yolo, multipart part `data` (what the gateway sends)
  gateway      POST /predict, multipart part `file`, end to end

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
from dataclasses import dataclass
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

# Goals of the serving section (issue 8): a lone request through the gateway answers in at most
# 0.8x the time of in-process predict, and 8 concurrent clients get at least twice the
# throughput of raw sequential predict, on every image.
GOAL_P50_RATIO = 0.80
GOAL_THROUGHPUT_RATIO = 2.0


@dataclass(frozen=True)
class BenchImage:
    """One image of the section: a label for tables, its bytes and its file."""

    label: str
    title: str
    data: bytes
    path: Path

    @property
    def content_type(self) -> str:
        """What a browser would send for it."""
        return "image/png" if self.path.suffix == ".png" else "image/jpeg"


def bench_images(ctx: BenchContext) -> list[BenchImage]:
    """The synthetic squares of ``--sizes`` and the real photos, in that order."""
    from PIL import Image

    out = [
        BenchImage(f"{size} px", f"{size}x{size} px synthetic JPEG", ctx.images[size],
                   ctx.image_files[size])
        for size in ctx.images
    ]
    for label, path in ctx.photos.items():
        with Image.open(path) as image:
            width, height = image.size
        out.append(BenchImage(label, f"{width}x{height} {label}", path.read_bytes(), path))
    return out


Predict = Callable[[Path], object]


def raw_predictors(ctx: BenchContext) -> dict[str, Predict]:
    """``raw`` (Ultralytics' defaults) and ``raw-threads`` (a worker's torch threads)."""
    if "raw" not in ctx.cache:
        import torch
        from ultralytics import YOLO

        model = YOLO(str(ctx.stack.weights))
        # The first predict builds the predictor, whose select_device() sets torch's threads to
        # cpu_count - 1: that is the default a user gets. Threads are process-wide, so each call
        # sets the count it measures.
        model.predict(str(next(iter(ctx.image_files.values()))), verbose=False)
        default_threads = torch.get_num_threads()

        def with_threads(threads: int) -> Predict:
            def predict(path: Path) -> object:
                torch.set_num_threads(threads)
                return model.predict(str(path), verbose=False)

            return predict

        ctx.cache["raw_default_threads"] = default_threads
        ctx.cache["raw"] = {"raw": with_threads(default_threads)}
        if ctx.raw_torch_threads != default_threads:
            ctx.cache["raw"]["raw-threads"] = with_threads(ctx.raw_torch_threads)
    predictors: dict[str, Predict] = ctx.cache["raw"]
    return predictors


def _handler_stages(body: Any) -> Mapping[str, float]:
    return dict(body.get("timing_ms") or {})


def _gateway_stages(body: Any) -> Mapping[str, float]:
    # The gateway's timing_ms may hold non-numeric entries; only times are stages.
    timing = body.get("timing_ms") or {}
    return {k: v for k, v in timing.items() if isinstance(v, int | float)}


def serving_calls(
    ctx: BenchContext, image: bytes, filename: str = "bench.jpg", content_type: str = "image/jpeg"
) -> dict[str, HttpCall]:
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
            files={"file": (filename, image, content_type)},
            headers=ctx.auth,
            stages=_gateway_stages,
        ),
    }


def _calls(ctx: BenchContext, image: BenchImage) -> dict[str, HttpCall]:
    return serving_calls(ctx, image.data, image.path.name, image.content_type)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _paired_latency(ctx: BenchContext, image: BenchImage, http: httpx.Client) -> dict[str, Run]:
    calls = _calls(ctx, image)
    counters = TorchServeCounters(ctx.stack.torchserve.metrics_url)

    def in_process(predict: Predict) -> Callable[[], Turn]:
        def once() -> Turn:
            t0 = time.perf_counter()
            results: Any = predict(image.path)
            return (time.perf_counter() - t0) * 1e3, dict(results[0].speed), {}

        return once

    def over_http(call: HttpCall) -> Callable[[], Turn]:
        def once() -> Turn:
            before = counters.read()  # outside the timed part; TorchServe's own view of it
            ms, body = send(http, call)
            stages = call.stages(body) if call.stages is not None else {}
            return ms, stages, TorchServeCounters.means(before, counters.read())

        return once

    targets = {name: in_process(predict) for name, predict in raw_predictors(ctx).items()}
    targets.update({f"{name}@1": over_http(call) for name, call in calls.items()})
    return measure_paired(targets, ctx.requests, ctx.warmup)


def _serving_image(ctx: BenchContext, image: BenchImage) -> dict[str, Any]:
    with httpx.Client(timeout=120.0) as http:
        runs = _paired_latency(ctx, image, http)
    # Throughput: blocks of raw sequential predict and of N concurrent clients, in rounds that
    # interleave them, so that a change of background load hits all of them alike.
    predict, calls = raw_predictors(ctx)["raw"], _calls(ctx, image)
    rounds: dict[str, list[Run]] = {}
    per_round = max(1, ctx.requests // ctx.rounds)
    for _ in range(ctx.rounds):
        rounds.setdefault("raw-sequential", []).append(
            measure_callable(lambda: predict(image.path), per_round, 1, "raw-sequential")
        )
        for name, call in calls.items():
            rounds.setdefault(f"{name}@{ctx.clients}", []).append(
                measure_http(call, per_round, ctx.warmup, ctx.clients, name)
            )
    runs.update({key: merge_runs(value) for key, value in rounds.items()})
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    strict = runs.get("raw-threads", raw)
    out: dict[str, Any] = {"title": image.title, "image_bytes": len(image.data), "runs": {}}
    for key, run in runs.items():
        out["runs"][key] = run.summary()
    out["ratios"] = {
        name: {
            # Against Ultralytics' defaults, paired turn by turn: the goal's figure.
            "p50_vs_raw": _ratio(runs[f"{name}@1"].p50_ms, raw.p50_ms),
            "p95_vs_raw": _ratio(runs[f"{name}@1"].p95_ms, raw.p95_ms),
            # Median of the per-turn ratios: robust to load that moves both figures.
            "paired_median_vs_raw": round(float(np.median(
                np.array(runs[f"{name}@1"].latencies_ms) / np.array(raw.latencies_ms)
            )), 3),
            # Against in-process predict with the worker's thread count (stricter).
            "p50_vs_raw_threads": _ratio(runs[f"{name}@1"].p50_ms, strict.p50_ms),
            f"throughput_{ctx.clients}_vs_raw_sequential": _ratio(
                runs[f"{name}@{ctx.clients}"].throughput, raw_seq.throughput
            ),
        }
        for name in calls
    }
    _print_serving(ctx, image, runs, out["ratios"])
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
    ctx: BenchContext, image: BenchImage, runs: dict[str, Run],
    ratios: dict[str, dict[str, float]],
) -> None:
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    table = Table(title=f"serving, {image.title} ({len(image.data) // 1024} KiB), "
                        f"imgsz {ctx.imgsz}, {raw.requests} requests per figure")
    for column in ("target", "p50 ms", "p95 ms", "p50 / raw", "paired / raw", "req/s 1 client",
                   f"req/s {ctx.clients} clients", f"{ctx.clients} clients / raw seq"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("raw (Ultralytics defaults)", f"{raw.p50_ms:.1f}", f"{raw.p95_ms:.1f}", "1.00",
                  "1.00", f"{raw.throughput:.2f}", "", "")
    if "raw-threads" in runs:
        strict = runs["raw-threads"]
        table.add_row(f"raw, {ctx.raw_torch_threads} torch threads", f"{strict.p50_ms:.1f}",
                      f"{strict.p95_ms:.1f}", f"{strict.p50_ms / raw.p50_ms:.2f}", "",
                      f"{strict.throughput:.2f}", "", "")
    table.add_row("raw, sequential loop", f"{raw_seq.p50_ms:.1f}", f"{raw_seq.p95_ms:.1f}",
                  f"{raw_seq.p50_ms / raw.p50_ms:.2f}", "", f"{raw_seq.throughput:.2f}", "",
                  "1.00")
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
    throughput = gateway[f"throughput_{ctx.clients}_vs_raw_sequential"]
    ctx.console.print(
        f"  goals: gateway p50 / raw p50 = {gateway['p50_vs_raw']:.2f} (paired "
        f"{gateway['paired_median_vs_raw']:.2f}; vs {ctx.raw_torch_threads} threads "
        f"{gateway['p50_vs_raw_threads']:.2f}; goal <= {GOAL_P50_RATIO}); gateway "
        f"{ctx.clients} clients / raw sequential throughput = {throughput:.2f} "
        f"(goal >= {GOAL_THROUGHPUT_RATIO})"
    )


def warm_stack(ctx: BenchContext, requests: int = 40) -> None:
    """Send ``requests`` untimed gateway requests per bench image, with several clients."""
    # The Java frontend runs interpreted until its JIT has seen a few hundred requests, and
    # every worker builds its kernels on first use: warm all of it once, through the gateway,
    # so the first figure is not the slow one.
    for image in bench_images(ctx):
        measure_http(_calls(ctx, image)["gateway"], requests, 0, max(ctx.clients, 2),
                     f"warm-up {image.label}")


def serving_section(ctx: BenchContext) -> dict[str, Any]:
    """Raw vs TorchServe vs gateway, latency and throughput, per image."""
    raw_predictors(ctx)
    ctx.console.print(
        f"[bold]serving[/bold]: runtime {ctx.stack.first_version.runtime}; raw in-process with "
        f"Ultralytics' defaults ({ctx.cache['raw_default_threads']} torch threads) and with "
        f"{ctx.raw_torch_threads}; each TorchServe worker has {ctx.torch_threads}"
    )
    warm_stack(ctx)
    return {
        "runtime": ctx.stack.first_version.runtime,
        "worker_threads": ctx.torch_threads,
        "raw_default_threads": ctx.cache["raw_default_threads"],
        "raw_torch_threads": ctx.raw_torch_threads,
        "imgsz": ctx.imgsz,
        "images": {image.label: _serving_image(ctx, image) for image in bench_images(ctx)},
    }


def serving_markdown(report: dict[str, Any], serving: dict[str, Any]) -> list[str]:
    """The serving figures of a report as one Markdown table (all images, all targets)."""
    clients = report["options"]["clients"]
    lines = [
        f"Runtime {serving['runtime']}; worker threads {serving['worker_threads']}; raw "
        f"in-process with Ultralytics' defaults ({serving['raw_default_threads']} torch threads); "
        f"raw-threads {serving['raw_torch_threads']}; imgsz {serving['imgsz']}.",
        "",
        f"| image | target | p50 ms | p95 ms | p50 / raw | paired / raw | req/s 1 client | "
        f"req/s {clients} clients | {clients} clients / raw seq |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, figures in serving["images"].items():
        runs, ratios = figures["runs"], figures["ratios"]
        raw, seq = runs["raw"], runs["raw-sequential"]
        lines.append(f"| {label} | raw | {raw['p50_ms']:.1f} | {raw['p95_ms']:.1f} | 1.00 | 1.00 "
                     f"| {raw['throughput_rps']:.2f} | | |")
        if "raw-threads" in runs:
            strict = runs["raw-threads"]
            lines.append(f"| {label} | raw-threads | {strict['p50_ms']:.1f} | "
                         f"{strict['p95_ms']:.1f} | {strict['p50_ms'] / raw['p50_ms']:.2f} | | "
                         f"{strict['throughput_rps']:.2f} | | |")
        lines.append(f"| {label} | raw, loop | {seq['p50_ms']:.1f} | {seq['p95_ms']:.1f} | "
                     f"{seq['p50_ms'] / raw['p50_ms']:.2f} | | {seq['throughput_rps']:.2f} | | "
                     "1.00 |")
        for name in ("torchserve", "gateway"):
            one, many = runs[f"{name}@1"], runs[f"{name}@{clients}"]
            ratio = ratios[name]
            lines.append(
                f"| {label} | {name} | {one['p50_ms']:.1f} | {one['p95_ms']:.1f} | "
                f"{ratio['p50_vs_raw']:.2f} | {ratio['paired_median_vs_raw']:.2f} | "
                f"{one['throughput_rps']:.2f} | "
                f"{many['throughput_rps']:.2f} | "
                f"{ratio[f'throughput_{clients}_vs_raw_sequential']:.2f} |"
            )
    return lines
