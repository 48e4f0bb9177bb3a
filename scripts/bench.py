"""Benchmark the serving path side by side: in-process Ultralytics vs TorchServe vs the gateway.

The bench starts its OWN TorchServe and gateway on free ports over a temporary copy of the models
(devstack.stack), never the ones of `make demo`, and stops them at the end. Per image size
(seeded synthetic scenes resized to a square, JPEG) it measures:

  raw         YOLO(weights).predict(jpeg_file, imgsz=...) in this process, with the same torch
              thread count as one TorchServe worker (handler.torch_threads; 0 = one per core)
  torchserve  POST /predictions/yolo, multipart part `data` (what the gateway sends)
  gateway     POST /predict, multipart part `file`, end to end

and prints p50/p95 latency (1 client), the ratio to raw, and throughput with 1 and N concurrent
clients. Latency is measured in paired turns (one request of each target in rotating order), so
that a machine shared with other jobs slows all targets alike; throughput in closed loops.
Sections are independent functions of a BenchContext, listed in SECTIONS; `serving` is the one
above, and:

  feedback  rows/s and calls/s of N concurrent writers through POST /feedback, the same images
            through POST /predict alone, and the store path in process (FeedbackRecorder.record,
            CsvStore.append); every acknowledged row is counted back in the CSV
  hotswap   failed requests and latency of N clients on POST /predict while the bench swaps two
            versions back and forth with yoloserve.modelserver.deploy.hot_swap_sync
  loop      RETRAIN_EVERY_K=k: feedback images until a retrain starts, then the time until the
            new version answers /predict, step by step (~4-5 min: a real fine-tune)

The bench's gateway runs with RETRAIN_EVERY_K=1e9, so no feedback starts a retrain except in
`loop`. docs/benchmarks.md has the figures and how to read them.

    python -m scripts.bench --requests 60
    python -m scripts.bench --set batchSize=1 --set handler.torch_threads=1 --set maxWorkers=2
    python -m scripts.bench --sections feedback,hotswap --json .run/bench.json
    python -m scripts.bench --sections loop --loop-k 10
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, as in the TorchServe worker (devstack.torchserve): spinning
# threads on a shared 2-core box would make the in-process figures unfairly slow.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import asyncio  # noqa: E402  (the environment above comes before torch is imported)
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import typer  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.support import (  # noqa: E402
    HttpCall,
    Run,
    TorchServeCounters,
    bench_image,
    closed_loop,
    feedback_boxes,
    grid_boxes,
    load_average,
    log_time,
    lost_rows,
    measure_callable,
    measure_http,
    measure_paired,
    overlaps,
    rows_by_column,
    send,
    spread,
    step_durations,
)
from devstack.stack import LocalStack  # noqa: E402
from yoloserve import paths  # noqa: E402
from yoloserve.embeddings.embedder import Embedder  # noqa: E402
from yoloserve.feedback.recorder import FeedbackRecorder  # noqa: E402
from yoloserve.feedback.store import CsvStore, embedding_fields, prod_header  # noqa: E402
from yoloserve.modelserver.deploy import hot_swap_sync  # noqa: E402
from yoloserve.modelserver.packaging import MODEL_CONFIG, MODEL_NAME, package  # noqa: E402
from yoloserve.offline import configure_offline  # noqa: E402
from yoloserve.training.dataset import CLASSES, iter_images  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__)

# Goals of the serving section (issue 2): the stack adds at most 10 % to a lone request at
# 640 px, and concurrent clients get at least the throughput of raw sequential predict.
GOAL_P50_RATIO = 1.10
GOAL_THROUGHPUT_RATIO = 1.0


@dataclass
class SectionOptions:
    """Options of the feedback, hotswap and loop sections (``--feedback-*``, ``--hotswap-*``,
    ``--loop-*``)."""

    feedback_calls: int = 400
    feedback_writers: int = 32
    feedback_dense_boxes: int = 32
    hotswap_requests: int = 2000
    hotswap_clients: int = 8
    hotswap_pause: float = 1.0
    hotswap_drain: float = 2.0
    loop_k: int = 10
    loop_ref_dir: Path | None = None
    loop_generate_ref: bool = False
    loop_timeout: float = 1800.0


@dataclass
class BenchContext:
    """What every section gets: the running stack, the images and the run options."""

    stack: LocalStack
    images: dict[int, bytes]
    image_files: dict[int, Path]
    requests: int
    warmup: int
    clients: int
    rounds: int
    model_config: dict[str, Any]
    console: Console
    raw_threads: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    options: SectionOptions = field(default_factory=SectionOptions)

    @property
    def handler_config(self) -> dict[str, Any]:
        """The ``handler:`` section of the packed model YAML."""
        return dict(self.model_config.get("handler") or {})

    @property
    def torch_threads(self) -> int:
        """Torch threads of one worker, as serving/handler.py decides them."""
        return int(self.handler_config.get("torch_threads") or 0) or (os.cpu_count() or 1)

    @property
    def raw_torch_threads(self) -> int:
        """Torch threads of the in-process baseline: the worker's, unless set on purpose."""
        return self.raw_threads or self.torch_threads

    @property
    def imgsz(self) -> int:
        """Inference size of the served model."""
        return int(self.handler_config.get("imgsz", 320))


Section = Callable[[BenchContext], dict[str, Any]]


# ---------------------------------------------------------------------------------- measuring

def _merge(runs: list[Run]) -> Run:
    """Several rounds of one measurement as one run (latencies pooled, wall times added)."""
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
            headers={"X-API-Key": ctx.stack.user_key},
            stages=_gateway_stages,
        ),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _paired_latency(ctx: BenchContext, size: int, http: httpx.Client) -> dict[str, Run]:
    predict, path = raw_predictor(ctx), ctx.image_files[size]
    calls = serving_calls(ctx, ctx.images[size])
    counters = TorchServeCounters(ctx.stack.torchserve.metrics_url)

    def raw() -> tuple[float, Mapping[str, float], Mapping[str, float]]:
        t0 = time.perf_counter()
        results: Any = predict(path)
        return (time.perf_counter() - t0) * 1e3, dict(results[0].speed), {}

    def over_http(call: HttpCall) -> Callable[[], tuple[float, Any, Mapping[str, float]]]:
        def once() -> tuple[float, Any, Mapping[str, float]]:
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
    runs.update({key: _merge(value) for key, value in rounds.items()})
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


def _mean(run: Run) -> float:
    return float(sum(run.latencies_ms) / len(run.latencies_ms)) if run.latencies_ms else 0.0


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

    row("client round trip / predict() call", _mean(raw), _mean(ts), _mean(gw))
    row("  client + uvicorn (outside the route)", None, None, _mean(gw) - gw_total)
    row("  gateway route (upload checks, JSON)", None, None, gw_total - gw_model)
    row("  client/gateway -> TorchServe HTTP", None, _mean(ts) - ts_front, gw_model - gw_front)
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


def _warm_stack(ctx: BenchContext, requests: int = 40) -> None:
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
    _warm_stack(ctx)
    return {
        "worker_torch_threads": ctx.torch_threads,
        "raw_torch_threads": ctx.raw_torch_threads,
        "imgsz": ctx.imgsz,
        "sizes": {str(size): _serving_size(ctx, size) for size in ctx.images},
    }


# ---------------------------------------------------------------------------------- feedback

# Goal of the feedback section (issue 3): 32 concurrent writers store >= 300 rows/s, none lost.
GOAL_FEEDBACK_ROWS_PER_S = 300.0
FEEDBACK_SEED = 4242  # feedback images: not the reference dataset's seeds (0, 1, 2)
FEEDBACK_POOL = 16
# RETRAIN_EVERY_K of the bench's gateway: thousands of feedback rows must not start a retrain
# (a job would take both cores for minutes in the middle of the figures). `loop` sets its own.
NO_RETRAIN_EVERY_K = 1_000_000_000


Boxes = list[tuple[list[float], str, float]]  # predicted boxes: xyxy, class name, confidence


@dataclass(frozen=True)
class FeedbackItem:
    """One feedback upload: the image and its ground-truth boxes (the ``labels`` JSON)."""

    image: bytes
    boxes: list[dict[str, Any]]


def feedback_pool(n: int, dense_boxes: int = 0, seed: int = FEEDBACK_SEED) -> list[FeedbackItem]:
    """``n`` generated shapes images (JPEG) with their true boxes, or ``dense_boxes`` grid boxes."""
    pool = []
    for image, shapes in iter_images(n, seed):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        boxes = (grid_boxes(*image.size, dense_boxes, CLASSES) if dense_boxes
                 else feedback_boxes(shapes))
        pool.append(FeedbackItem(buffer.getvalue(), boxes))
    return pool


@dataclass(frozen=True)
class FeedbackOutcome:
    """One ``POST /feedback`` (or one ``record()``/``append()`` call) as the writer saw it."""

    ms: float
    feedback_id: str | None
    rows: int
    error: str | None = None


def _rates(outcomes: list[FeedbackOutcome], wall: float) -> dict[str, Any]:
    done = [o for o in outcomes if o.error is None]
    rows = sum(o.rows for o in done)
    latencies = [o.ms for o in done]
    return {
        "calls": len(outcomes),
        "failed": len(outcomes) - len(done),
        "first_error": next((o.error for o in outcomes if o.error is not None), None),
        "rows_acknowledged": rows,
        "wall_s": round(wall, 3),
        "calls_per_s": round(len(done) / wall, 2) if wall > 0 else None,
        "rows_per_s": round(rows / wall, 2) if wall > 0 else None,
        "rows_per_call": round(rows / len(done), 2) if done else None,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
    }


def _check_rows(
    csv_path: Path, before: Counter[str], outcomes: list[FeedbackOutcome]
) -> dict[str, Any]:
    """Count the CSV's rows against what the writers were told was stored."""
    after = rows_by_column(csv_path, "feedback_id")
    acknowledged = {o.feedback_id: o.rows for o in outcomes if o.error is None and o.feedback_id}
    lost = lost_rows(acknowledged, after)
    return {
        "rows_in_file_added": sum(after.values()) - sum(before.values()),
        "rows_lost": sum(lost.values()),
        "feedback_ids_with_lost_rows": len(lost),
    }


def _gateway_feedback(ctx: BenchContext, pool: list[FeedbackItem], calls: int,
                      clients: int) -> dict[str, Any]:
    url, headers = f"{ctx.stack.gateway_url}/feedback", {"X-API-Key": ctx.stack.user_key}

    async def send(http: httpx.AsyncClient, i: int) -> FeedbackOutcome:
        item = pool[i % len(pool)]
        t0 = time.perf_counter()
        try:
            response = await http.post(
                url, headers=headers, files={"file": ("feedback.jpg", item.image, "image/jpeg")},
                data={"labels": json.dumps({"boxes": item.boxes})},
            )
        except httpx.HTTPError as exc:
            return FeedbackOutcome((time.perf_counter() - t0) * 1e3, None, 0, repr(exc))
        ms = (time.perf_counter() - t0) * 1e3
        if response.status_code != 201:
            return FeedbackOutcome(ms, None, 0, f"{response.status_code} {response.text[:200]}")
        body = response.json()
        return FeedbackOutcome(ms, body["feedback_id"], int(body["rows_written"]))

    closed_loop(send, max(ctx.warmup, 1), 1)  # untimed: first embedder use, first file
    prod = ctx.stack.data_dir / "prod_data.csv"
    before = rows_by_column(prod, "feedback_id")
    outcomes, wall = closed_loop(send, calls, clients)
    return {**_rates(outcomes, wall), **_check_rows(prod, before, outcomes)}


def _gateway_predict(ctx: BenchContext, pool: list[FeedbackItem], calls: int,
                     clients: int) -> dict[str, Any]:
    """``POST /predict`` on the same images and clients: the prediction part of a feedback."""
    url = f"{ctx.stack.gateway_url}/predict"

    async def send(http: httpx.AsyncClient, i: int) -> FeedbackOutcome:
        t0 = time.perf_counter()
        response = await http.post(
            url, files={"file": ("p.jpg", pool[i % len(pool)].image, "image/jpeg")}
        )
        ms = (time.perf_counter() - t0) * 1e3
        error = None if response.status_code == 200 else response.text[:200]
        return FeedbackOutcome(ms, None, 0, error)

    outcomes, wall = closed_loop(send, calls, clients)
    return {**_rates(outcomes, wall), "rows_in_file_added": None, "rows_lost": None}


def _threaded(fn: Callable[[int], FeedbackOutcome], calls: int,
              threads: int) -> tuple[list[FeedbackOutcome], float]:
    def timed(i: int) -> FeedbackOutcome:
        t0 = time.perf_counter()
        try:
            outcome = fn(i)
        except Exception as exc:  # a failed write is a figure here, not the end of the bench
            return FeedbackOutcome((time.perf_counter() - t0) * 1e3, None, 0, repr(exc))
        return FeedbackOutcome((time.perf_counter() - t0) * 1e3, outcome.feedback_id, outcome.rows)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(timed, range(calls)))
    return outcomes, time.perf_counter() - start


def _store_append(folder: Path, dim: int, rows_per_append: int, calls: int,
                  threads: int) -> dict[str, Any]:
    """``CsvStore.append`` alone: lock, write, fsync, count (what every feedback ends with)."""
    store = CsvStore(folder / "prod_data.csv", prod_header(dim))
    vectors = np.random.default_rng(0).normal(size=(rows_per_append, dim)).astype(np.float32)

    def append(i: int) -> FeedbackOutcome:
        rows: list[dict[str, object]] = [
            {**embedding_fields(vector), "target": "circle", "prediction": "circle",
             "timestamp": "2026-01-01T00:00:00.000+00:00", "feedback_id": f"append-{i}",
             "request_id": "", "model_version": "1", "image": ""}
            for vector in vectors
        ]
        store.append(rows)
        return FeedbackOutcome(0.0, f"append-{i}", len(rows))

    outcomes, wall = _threaded(append, calls, threads)
    return {**_rates(outcomes, wall), **_check_rows(store.path, Counter(), outcomes)}


def _recorder(folder: Path, embedder: Embedder, pool: list[FeedbackItem],
              predicted: list[Boxes], calls: int,
              threads: int) -> dict[str, Any]:
    """``FeedbackRecorder.record``: image and label files, match, embed, append."""
    store = CsvStore(folder / "prod_data.csv", prod_header(embedder.dim))
    recorder = FeedbackRecorder(folder, embedder, store)

    def record(i: int) -> FeedbackOutcome:
        item = pool[i % len(pool)]
        gt = [(box["xyxy"], box["name"]) for box in item.boxes]
        result = recorder.record(item.image, gt, predicted[i % len(pool)], "1", None,
                                 list(CLASSES))
        return FeedbackOutcome(0.0, result.feedback_id, result.rows_written)

    record(0)  # untimed warm-up, as for the gateway (its rows are not in the check below)
    before = rows_by_column(store.path, "feedback_id")
    outcomes, wall = _threaded(record, calls, threads)
    return {**_rates(outcomes, wall), **_check_rows(store.path, before, outcomes)}


def _predictions(ctx: BenchContext, pool: list[FeedbackItem]) -> list[Boxes]:
    """What the served model answers for each pool image (the recorder pairs rows with it)."""
    out = []
    with httpx.Client(timeout=120.0) as http:
        for item in pool:
            response = http.post(f"{ctx.stack.gateway_url}/predict",
                                 files={"file": ("p.jpg", item.image, "image/jpeg")})
            response.raise_for_status()
            out.append([(b["xyxy"], b["name"], b["conf"]) for b in response.json()["boxes"]])
    return out


def feedback_section(ctx: BenchContext) -> dict[str, Any]:
    """Feedback rows/s with N concurrent writers: through the gateway, then the store alone."""
    opts = ctx.options
    calls, writers, dense = opts.feedback_calls, opts.feedback_writers, opts.feedback_dense_boxes
    ctx.console.print(f"[bold]feedback[/bold]: {calls} calls per workload, {writers} writers")
    pools = {"shapes": feedback_pool(FEEDBACK_POOL)}
    if dense:
        pools[f"dense{dense}"] = feedback_pool(FEEDBACK_POOL, dense)
    out: dict[str, Any] = {"writers": writers, "calls": calls, "gateway": {}, "predict": {},
                           "recorder": {}, "append": {}}
    for name, pool in pools.items():
        out["gateway"][name] = _gateway_feedback(ctx, pool, calls, writers)
    # The same images through /predict alone: what the feedback route's own prediction costs.
    out["predict"]["shapes"] = _gateway_predict(ctx, pools["shapes"], calls, writers)
    embedder = Embedder.load(ctx.stack.models_dir / "embedder" / "embedder.npz")
    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=ctx.stack.root))
    for name, pool in pools.items():
        folder = root / f"recorder-{name}"
        out["recorder"][name] = _recorder(folder, embedder, pool, _predictions(ctx, pool),
                                          calls, writers)
        rows = max(1, round(out["gateway"][name]["rows_per_call"] or 1))
        out["append"][name] = _store_append(root / f"append-{name}", embedder.dim, rows,
                                            calls, writers)
        out["append"][name]["rows_per_append"] = rows
    _print_feedback(ctx, out)
    return out


def _print_feedback(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"feedback, {out['writers']} concurrent writers, {out['calls']} calls each")
    for column in ("path", "workload", "calls/s", "rows/call", "rows/s", "p50 ms", "p95 ms",
                   "failed", "rows lost"):
        table.add_column(column, justify="left" if column in ("path", "workload") else "right")
    for path in _WRITE_PATHS:
        for workload, f in out[path].items():
            table.add_row(path, workload, f"{f['calls_per_s']}", f"{f['rows_per_call']}",
                          f"{f['rows_per_s']}", f"{f['p50_ms']}", f"{f['p95_ms']}",
                          f"{f['failed']}", f"{f['rows_lost']}")
    ctx.console.print(table)
    shapes = out["gateway"]["shapes"]
    ctx.console.print(f"  goal: gateway >= {GOAL_FEEDBACK_ROWS_PER_S:.0f} rows/s with 0 lost: "
                      f"{shapes['rows_per_s']} rows/s, {shapes['rows_lost']} lost (shapes)")


# ---------------------------------------------------------------------------------- hot swap

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


def _latency(outcomes: list[Outcome]) -> dict[str, Any]:
    ms = [(o.end - o.start) * 1e3 for o in outcomes if o.status == 200]
    if not ms:
        return {"requests": len(outcomes)}
    return {"requests": len(outcomes), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(max(ms)), 1),
            "over_1s": sum(1 for v in ms if v > 1000.0)}


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
    swaps: list[tuple[str, float, float]] = []
    with BackgroundLoad(call, opts.hotswap_clients) as load:
        while len(load.outcomes) < 20:  # the clients' connections and the JIT are warm
            time.sleep(0.2)
        t_start = time.perf_counter()
        try:
            while (load.count_since(t_start) < opts.hotswap_requests or len(swaps) % 2
                   or len(swaps) < 2):
                target = (second, first)[len(swaps) % 2]
                t0 = time.perf_counter()
                hot_swap_sync(*urls, registry, target, drain_s=opts.hotswap_drain)
                swaps.append((target, t0, time.perf_counter()))
                ctx.console.print(f"  swap {len(swaps)} to v{target}: "
                                  f"{swaps[-1][2] - t0:.1f} s, "
                                  f"{load.count_since(t_start)} requests so far")
                time.sleep(opts.hotswap_pause)
        finally:
            if registry.load().default_version != first:  # a failed swap: leave v1 serving
                hot_swap_sync(*urls, registry, first, drain_s=opts.hotswap_drain)
        t_end = time.perf_counter()
    outcomes = [o for o in load.outcomes if t_start <= o.start <= t_end]
    failed = [o for o in outcomes if o.status != 200]
    windows = [(t0, t1) for _, t0, t1 in swaps]
    during = [o for o in outcomes if overlaps(o.start, o.end, windows)]
    between = [o for o in outcomes if not overlaps(o.start, o.end, windows)]
    # After a swap returned, every answer should come from its version (the old one drained).
    stale = 0
    for k, (target, _, t1) in enumerate(swaps):
        until = swaps[k + 1][1] if k + 1 < len(swaps) else t_end
        stale += sum(1 for o in outcomes
                     if t1 < o.start and o.end < until and o.status == 200
                     and o.version != target)
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
        "latency_all": _latency(outcomes),
        "latency_during_swaps": _latency(during),
        "latency_between_swaps": _latency(between),
    }
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
                      f"{opts.hotswap_requests}: {out['failed']} of {out['requests']}; "
                      f"{stale} answers from the old version after a swap returned")
    return out


# ---------------------------------------------------------------------------------- retrain loop

LOOP_SEED = 777  # the loop's feedback images: neither the reference nor the feedback section's
GOAL_LOOP_S = 600.0  # issue 3: k-th feedback to the new version serving in <= 10 min, 2 cores


def _move_aside(path: Path, suffix: str) -> None:
    if path.exists():
        path.rename(path.with_name(f"{path.name}.{suffix}"))


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _loop_rows(loop: dict[str, Any]) -> list[tuple[str, tuple[str, str]]]:
    def text(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    return [(mark, (text(after), text(loop["steps_s"][mark])))
            for mark, after in loop["seconds_after_trigger"].items()]


def loop_section(ctx: BenchContext) -> dict[str, Any]:
    """Time from the feedback that reaches k rows to the retrained version answering /predict."""
    opts, stack = ctx.options, ctx.stack
    k = opts.loop_k
    out: dict[str, Any] = {"every_k": k}
    ref_dir = opts.loop_ref_dir
    if ref_dir is None and not opts.loop_generate_ref:
        existing = paths.DATA_DIR / "shapes"
        ref_dir = existing if (existing / "images" / "train").is_dir() else None
    if ref_dir is None:
        # What the first job of a fresh platform does itself (retrain._ensure_reference): timed
        # here, before the clock of the loop starts, and reported on its own.
        from yoloserve.training.dataset import generate_dataset

        ref_dir = stack.root / "shapes"
        ctx.console.print(f"[bold]loop[/bold]: generating the reference dataset in {ref_dir}")
        t0 = time.perf_counter()
        generate_dataset(ref_dir)
        out["reference_generated_s"] = round(time.perf_counter() - t0, 1)
    out["reference_dir"] = str(ref_dir)
    # Earlier sections' thousands of feedback images would be retrained on: start clean.
    _move_aside(stack.data_dir / "feedback", "bench-before-loop")
    _move_aside(stack.data_dir / "prod_data.csv", "bench-before-loop")
    stack.stop_gateway()
    stack.extra_env.update(RETRAIN_EVERY_K=str(k), RETRAIN_REF_DIR=str(ref_dir))
    stack.start_gateway()
    settings = {key: value for key, value in stack.gateway_env.items()
                if key.startswith("RETRAIN_")}
    out["retrain_env"] = settings
    ctx.console.print(f"[bold]loop[/bold]: k={k}, {settings}")

    gateway = stack.gateway_url
    auth = {"X-API-Key": stack.user_key}
    with httpx.Client(base_url=gateway, timeout=120.0) as http:
        old = http.get("/models").json()["default_version"]
        images = rows = 0
        job_id = None
        t_first = time.time()
        for image, shapes in iter_images(20 * k, LOOP_SEED):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            response = http.post("/feedback", headers=auth,
                                 files={"file": ("loop.jpg", buffer.getvalue(), "image/jpeg")},
                                 data={"labels": json.dumps({"boxes": feedback_boxes(shapes)})})
            response.raise_for_status()
            body = response.json()
            images, rows = images + 1, rows + int(body["rows_written"])
            if body["retrain"]["triggered"]:
                job_id = body["retrain"]["job_id"]
                break
        t_trigger = time.time()
        if job_id is None:
            raise RuntimeError(f"{images} feedback images ({rows} rows) started no retrain")
        out.update(feedback_images=images, feedback_rows=rows, job_id=job_id,
                   feedback_posting_s=round(t_trigger - t_first, 1))
        ctx.console.print(f"  job {job_id} started by feedback image {images} ({rows} rows)")

        new = None
        deadline = time.monotonic() + opts.loop_timeout
        while time.monotonic() < deadline:
            default = http.get("/models").json()["default_version"]
            if default != old:
                new = default
                break
            job = http.get(f"/retrain/{job_id}").json()
            if job["state"] in ("failed", "rejected"):
                out["job"] = job
                raise RuntimeError(f"job {job_id} {job['state']}: {job['reason']}")
            time.sleep(0.5)
        if new is None:
            raise RuntimeError(f"no new default version after {opts.loop_timeout:.0f} s")
        t_default = time.time()
        probe = ctx.images[min(ctx.images)]
        while time.monotonic() < deadline:
            r = http.post("/predict", files={"file": ("p.jpg", probe, "image/jpeg")})
            if r.status_code == 200 and r.headers.get("X-Model-Version") == new:
                break
            time.sleep(0.2)
        t_serving = time.time()
        job = http.get(f"/retrain/{job_id}").json()
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)  # the job finishes right after its swap: its record closes then
            job = http.get(f"/retrain/{job_id}").json()

    # The registry's record, which has more than GET /retrain (created_at, data counts).
    job = stack.registry.get_job(job_id).model_dump(mode="json")
    log_path = stack.run_dir / "retrain" / f"{job_id}.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    results_csv = stack.run_dir / "retrain" / job_id / "train" / "candidate" / "results.csv"
    mar = stack.store_dir / stack.registry.get(new).mar
    # In the order they happen. The registry's default (what GET /models shows) changes in the
    # middle of the swap, right after TorchServe's set-default; the job's swap then drains the
    # old version and unregisters it before it logs "serves now".
    marks = {
        "k-th feedback answered": t_trigger,
        "job started (registry, whole s)": _epoch(job.get("started_at")),
        "dataset built (job log)": log_time(log, f"job {job_id}: parent"),
        "last epoch done (results.csv)": (results_csv.stat().st_mtime if results_csv.is_file()
                                          else None),
        "evaluated and packaged (.mar)": mar.stat().st_mtime if mar.is_file() else None,
        "GET /models shows it": t_default,
        "/predict answers with it": t_serving,
        "swap returned: old version drained, unregistered (job log)": log_time(log, "serves now"),
    }
    out["job"] = {key: job.get(key) for key in ("state", "reason", "metrics", "data",
                                                 "created_at", "started_at", "finished_at")}
    out["marks"] = marks
    out["new_version"], out["old_version"] = new, old
    out["seconds_after_trigger"] = {
        name: None if t is None else round(t - t_trigger, 1) for name, t in marks.items()
    }
    out["steps_s"] = step_durations(marks)
    out["total_s"] = round(t_serving - t_trigger, 1)
    out["job_log"] = str(log_path)
    table = Table(title=f"retrain loop: k={k}, feedback image {images} ({rows} rows) -> v{new}")
    for column in ("mark", "s after the k-th feedback", "s since the previous mark"):
        table.add_column(column, justify="left" if column == "mark" else "right")
    for mark, row in _loop_rows(out):
        table.add_row(mark, *row)
    ctx.console.print(table)
    ctx.console.print(f"  total: k-th feedback -> /predict answers v{new}: {out['total_s']} s "
                      f"(goal <= {GOAL_LOOP_S:.0f} s)")
    if "reference_generated_s" in out:
        ctx.console.print(f"  reference dataset generated beforehand in "
                          f"{out['reference_generated_s']} s (not in the total)")
    return out


# One function of the context per section; they run in this order whatever --sections lists
# (`loop` restarts the gateway with a small RETRAIN_EVERY_K and leaves a retrained default).
SECTIONS: dict[str, Section] = {
    "serving": serving_section,
    "feedback": feedback_section,
    "hotswap": hotswap_section,
    "loop": loop_section,
}
DEFAULT_SECTIONS = "serving,feedback,hotswap,loop"  # loop measured at ~4.5 min: under 10


# ---------------------------------------------------------------------------------- the CLI

def _set_dotted(config: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)  # "1" -> 1, "true" -> True, as in the YAML file


def _properties(assignments: list[str]) -> dict[str, str]:
    out = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
        out[key.strip()] = value.strip()
    return out


def _machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_start": load_average(),
    }


def report_markdown(report: dict[str, Any]) -> str:
    """A report as Markdown: the command, the conditions, one table per section that ran."""
    machine = report["machine"]
    lines = [
        f"`{report['command']}`",
        "",
        f"{machine['cpu_count']} cores, torch {machine['torch']}; load average (1/5/15 min) "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_start'])} at start, "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_end'])} at end.",
    ]
    writers = {"serving": _serving_markdown, "feedback": _feedback_markdown,
               "hotswap": _hotswap_markdown, "loop": _loop_markdown}
    for name, section in report["sections"].items():
        if name in writers:
            lines += writers[name](report, section)
    return "\n".join(lines) + "\n"


def _serving_markdown(report: dict[str, Any], serving: dict[str, Any]) -> list[str]:
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


_WRITE_PATHS = {
    "gateway": "gateway `POST /feedback` (prediction + record)",
    "predict": "gateway `POST /predict` only (same images)",
    "recorder": "`FeedbackRecorder.record` in process",
    "append": "`CsvStore.append` in process",
}


def _feedback_markdown(report: dict[str, Any], feedback: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Feedback: {feedback['writers']} concurrent writers, {feedback['calls']} calls per "
        "table row.",
        "",
        "| write path | labels | calls/s | rows/call | rows/s | p50 ms | p95 ms | failed | "
        "rows acknowledged | rows added to the CSV | rows lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, label in _WRITE_PATHS.items():
        for workload, f in feedback[path].items():
            if path == "predict":  # no rows: only the calls and their latency
                lines.append(f"| {label} | {workload} | {f['calls_per_s']} | - | - | "
                             f"{f['p50_ms']} | {f['p95_ms']} | {f['failed']} | - | - | - |")
                continue
            lines.append(
                f"| {label} | {workload} | {f['calls_per_s']} | {f['rows_per_call']} | "
                f"{f['rows_per_s']} | {f['p50_ms']} | {f['p95_ms']} | {f['failed']} | "
                f"{f['rows_acknowledged']} | {f['rows_in_file_added']} | {f['rows_lost']} |"
            )
    return lines


def _hotswap_markdown(report: dict[str, Any], hotswap: dict[str, Any]) -> list[str]:
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
    for name in ("all", "during_swaps", "between_swaps"):
        f = hotswap[f"latency_{name}"]
        lines.append(f"| {name.replace('_', ' ')} | {f['requests']} | {f.get('p50_ms')} | "
                     f"{f.get('p95_ms')} | {f.get('p99_ms')} | {f.get('max_ms')} | "
                     f"{f.get('over_1s')} |")
    return lines


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def _loop_markdown(report: dict[str, Any], loop: dict[str, Any]) -> list[str]:
    job = loop["job"]
    data = job.get("data") or {}
    metrics = job.get("metrics") or {}
    cand, curr = metrics.get("candidate") or {}, metrics.get("current") or {}
    lines = [
        "",
        f"Retrain loop: k = {loop['every_k']} rows; feedback image {loop['feedback_images']} "
        f"({loop['feedback_rows']} rows) started job {loop['job_id']}, which trained on "
        f"{data.get('ref_train')} reference + {data.get('feedback_train')} feedback images "
        f"and judged on {data.get('ref_eval')} + {data.get('feedback_eval')}; candidate mAP50 "
        f"{_fmt(cand.get('map50'))} vs current {_fmt(curr.get('map50'))}: "
        f"v{loop['new_version']} serves. "
        f"Reference dataset: `{loop['reference_dir']}`"
        + (f", generated first in {loop['reference_generated_s']} s (not in the total)."
           if "reference_generated_s" in loop else " (existing).")
        + " Job settings set by the bench: "
        + ", ".join(f"`{key}={value}`" for key, value in sorted(loop["retrain_env"].items()))
        + "; the TorchServe URLs, registry and feedback folder are the stack's (the gateway "
        "fills them in); everything else is the `RetrainSettings` default.",
        "",
        "| mark | s after the k-th feedback | s since the previous mark |",
        "|---|---|---|",
    ]
    lines += [f"| {mark} | {after} | {step} |" for mark, (after, step) in _loop_rows(loop)]
    lines += ["", f"**Total: k-th feedback -> `/predict` answers v{loop['new_version']}: "
                  f"{loop['total_s']} s** (goal <= {GOAL_LOOP_S:.0f} s)."]
    return lines


@app.command()
def main(
    requests: Annotated[int, typer.Option(help="Timed requests per figure.")] = 40,
    warmup: Annotated[int, typer.Option(help="Untimed requests before each figure.")] = 5,
    sizes: Annotated[str, typer.Option(help="Image sizes in px, comma-separated.")] = "640,320",
    clients: Annotated[int, typer.Option(help="Concurrent clients of the throughput run.")] = 8,
    rounds: Annotated[
        int, typer.Option(help="Split the throughput runs into rounds that interleave the targets.")
    ] = 2,
    sections: Annotated[
        str, typer.Option(help=f"Sections to run, comma-separated, of {', '.join(SECTIONS)} "
                               "(run in that order; loop takes ~5 min).")
    ] = DEFAULT_SECTIONS,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every figure (raw latencies too) here.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the sections' tables as Markdown here.")
    ] = None,
    weights: Annotated[Path, typer.Option(help="Weights to serve.")] = paths.DEFAULT_WEIGHTS,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a model-config.yaml key, e.g. batchSize=1 or "
                                   "handler.torch_threads=1 (repeatable)."),
    ] = None,
    ts_property: Annotated[
        list[str] | None,
        typer.Option(help="Override a config.properties key, KEY=VALUE (repeatable)."),
    ] = None,
    raw_threads: Annotated[
        int | None,
        typer.Option(help="Torch threads of the in-process baseline; default: a worker's."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep the stack (logs included) in this new folder; default: a "
                          "temporary folder, removed at the end."),
    ] = None,
    feedback_calls: Annotated[
        int, typer.Option(help="feedback: calls per workload and write path.")
    ] = SectionOptions.feedback_calls,
    feedback_writers: Annotated[
        int, typer.Option(help="feedback: concurrent writers (tasks for HTTP, threads in process).")
    ] = SectionOptions.feedback_writers,
    feedback_dense_boxes: Annotated[
        int, typer.Option(help="feedback: boxes per image of the dense workload (0: skip it).")
    ] = SectionOptions.feedback_dense_boxes,
    hotswap_requests: Annotated[
        int, typer.Option(help="hotswap: swap back and forth until the clients sent this many.")
    ] = SectionOptions.hotswap_requests,
    hotswap_clients: Annotated[
        int, typer.Option(help="hotswap: concurrent clients looping on POST /predict.")
    ] = SectionOptions.hotswap_clients,
    hotswap_pause: Annotated[
        float, typer.Option(help="hotswap: seconds between the end of a swap and the next.")
    ] = SectionOptions.hotswap_pause,
    hotswap_drain: Annotated[
        float, typer.Option(help="hotswap: the swap's drain before the old version goes.")
    ] = SectionOptions.hotswap_drain,
    loop_k: Annotated[
        int, typer.Option(help="loop: RETRAIN_EVERY_K, feedback rows that start a retrain.")
    ] = SectionOptions.loop_k,
    loop_ref_dir: Annotated[
        Path | None,
        typer.Option(help="loop: reference dataset (RETRAIN_REF_DIR); default data/shapes if it "
                          "exists, else one generated in the workdir first."),
    ] = None,
    loop_generate_ref: Annotated[
        bool, typer.Option(help="loop: generate the reference dataset in the workdir (timed).")
    ] = False,
    loop_timeout: Annotated[
        float, typer.Option(help="loop: give up after this many seconds.")
    ] = SectionOptions.loop_timeout,
) -> None:
    """Start a private TorchServe + gateway, run the sections, print and save the figures."""
    configure_offline()
    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise typer.BadParameter(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    chosen = [name for name in SECTIONS if name in chosen]
    options = SectionOptions(
        feedback_calls, feedback_writers, feedback_dense_boxes, hotswap_requests,
        hotswap_clients, hotswap_pause, hotswap_drain, loop_k, loop_ref_dir, loop_generate_ref,
        loop_timeout,
    )
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    model_config = yaml.safe_load(MODEL_CONFIG.read_text())
    for assignment in set_ or []:
        _set_dotted(model_config, assignment)
    properties = _properties(ts_property or [])
    console = Console(width=150)

    with tempfile.TemporaryDirectory(prefix="yoloserve-bench-") as tmp:
        root = workdir or Path(tmp) / "stack"
        config_file = None
        if set_:
            config_file = Path(tmp) / "model-config.yaml"
            config_file.write_text(yaml.safe_dump(model_config, sort_keys=False))
        images = {size: bench_image(size) for size in size_list}
        image_files = {}
        for size, data in images.items():
            image_files[size] = Path(tmp) / f"bench_{size}.jpg"
            image_files[size].write_bytes(data)
        console.print(f"starting TorchServe + gateway under {root} ...")
        t0 = time.perf_counter()
        stack = LocalStack.create(
            root, weights=weights, model_config=config_file, ts_properties=properties,
            extra_env={"RETRAIN_EVERY_K": str(NO_RETRAIN_EVERY_K)},
        )
        with stack:
            console.print(f"stack ready in {time.perf_counter() - t0:.0f} s: torchserve "
                          f"{stack.torchserve.inference_url}, gateway {stack.gateway_url}")
            ctx = BenchContext(stack, images, image_files, requests, warmup, clients, rounds,
                               model_config, console, raw_threads, options=options)
            report: dict[str, Any] = {
                "command": shlex.join(["python", "-m", "scripts.bench", *sys.argv[1:]]),
                "options": {"requests": requests, "warmup": warmup, "sizes": size_list,
                            "clients": clients, "rounds": rounds, "set": set_ or [],
                            "ts_property": properties, "raw_threads": raw_threads,
                            "sections": chosen, **{k: str(v) if isinstance(v, Path) else v
                                                   for k, v in vars(options).items()}},
                "machine": _machine(),
                "model_config": model_config,
                "sections": {},
            }
            for name in chosen:
                report["sections"][name] = SECTIONS[name](ctx)
            report["machine"]["load_average_end"] = load_average()
        console.print(f"load average at start {report['machine']['load_average_start']}, "
                      f"at end {report['machine']['load_average_end']}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"figures written to {json_out}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report))
        console.print(f"Markdown table written to {markdown}")


if __name__ == "__main__":
    app()
