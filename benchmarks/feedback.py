"""The feedback section: rows/s and calls/s of N concurrent feedback writers, none lost.

Five write paths, each on the same generated images (true labels, ``shapes``; and, unless
``--feedback-dense-boxes 0``, a dense grid of boxes per image, ``dense<N>``):

  gateway   POST /feedback from N closed-loop tasks, no prediction before it (a cache miss:
            the gateway runs the model, then match, embed, append)
  cached    like a user: every image was sent to POST /predict first (8 clients, untimed), then
            N tasks send its POST /feedback with that prediction's request_id (timed); the
            gateway reuses the cached prediction (hits and misses read from /metrics)
  predict   POST /predict alone, same images and clients: the prediction part of a feedback
  recorder  FeedbackRecorder.record in this process, N threads, into a scratch folder and store
  append    FeedbackLedger.commit in this process, N threads, as many rows per call as the
            gateway's (the store's write transaction: what every feedback ends with)

Every acknowledged row (``feedback_id`` -> ``rows_written``) is counted back in the CSV
(exported from the store first), so a figure also says how many rows were lost. The bench's
gateway runs with a huge ``RETRAIN_EVERY_K``, so none of these rows starts a retrain.

    python -m benchmarks --sections feedback --feedback-calls 400 --feedback-writers 32
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.table import Table

from benchmarks.context import BenchContext
from benchmarks.http_load import closed_loop
from benchmarks.images import feedback_boxes, grid_boxes
from benchmarks.rows import lost_rows, rows_by_column
from yoloserve.embeddings.embedder import Embedder
from yoloserve.feedback.export import ProdCsvExporter
from yoloserve.feedback.ledger import FeedbackLedger, ProdRow
from yoloserve.feedback.recorder import FeedbackRecorder
from yoloserve.store.engine import Store, open_store
from yoloserve.training.dataset import CLASSES, iter_images

# Goal of the feedback section (issue 3): 32 concurrent writers store >= 300 rows/s, none lost.
GOAL_FEEDBACK_ROWS_PER_S = 300.0
FEEDBACK_SEED = 4242  # feedback images: not the reference dataset's seeds (0, 1, 2)
FEEDBACK_POOL = 16

Boxes = list[tuple[list[float], str, float]]  # predicted boxes: xyxy, class name, confidence

WRITE_PATHS = {
    "gateway": "gateway `POST /feedback` (prediction + record)",
    "cached": "gateway `POST /feedback` after `POST /predict` (cached prediction + record)",
    "predict": "gateway `POST /predict` only (same images)",
    "recorder": "`FeedbackRecorder.record` in process",
    "append": "`FeedbackLedger.commit` in process",
}


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
    """One ``POST /feedback`` (or one ``record()``/``append()`` call) as the writer saw it;
    ``request_id``: the prediction it corrected, when it named one."""

    ms: float
    feedback_id: str | None
    rows: int
    error: str | None = None
    request_id: str | None = None


def rates(outcomes: list[FeedbackOutcome], wall: float) -> dict[str, Any]:
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
    url, headers = f"{ctx.stack.gateway_url}/feedback", ctx.auth

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
    store, prod = open_store(ctx.stack.database_url), ctx.stack.data_dir / "prod_data.csv"
    before = rows_by_column(exported(store, prod), "feedback_id")
    outcomes, wall = closed_loop(send, calls, clients)
    return {**rates(outcomes, wall), **_check_rows(exported(store, prod), before, outcomes)}


_CACHE_LOOKUP = re.compile(r'^gateway_prediction_cache_lookups_total\{result="(\w+)"\} (\S+)$',
                           re.MULTILINE)


def cache_lookups(gateway_url: str) -> Counter[str]:
    """A gateway's prediction cache lookups so far, by result (``hit``, ``miss``)."""
    text = httpx.get(f"{gateway_url}/metrics", timeout=30).text
    return Counter({result: int(float(n)) for result, n in _CACHE_LOOKUP.findall(text)})


def round_robin(gateways: Sequence[str], i: int) -> str:
    """The gateway of call ``i``: calls spread in turn over the replicas.

    An image's ``/predict`` and its ``/feedback`` have the same ``i``, so they meet the same
    replica (the prediction cache is per process).

    Example:
        >>> [round_robin(["a", "b", "c"], i) for i in range(4)]
        ['a', 'b', 'c', 'a']
    """
    return gateways[i % len(gateways)]


def predict_first(gateways: Sequence[str], pool: list[FeedbackItem],
                  clients: int = 8) -> tuple[dict[int, str], float]:
    """``POST /predict`` of every pool image (what a user does before correcting it), each on
    its ``round_robin`` gateway; the predictions' ``request_id`` per image, and the wall time."""
    request_ids: dict[int, str] = {}

    async def predict(http: httpx.AsyncClient, i: int) -> None:
        response = await http.post(f"{round_robin(gateways, i)}/predict",
                                   files={"file": ("p.jpg", pool[i].image, "image/jpeg")})
        response.raise_for_status()
        request_ids[i] = response.json()["request_id"]

    _, wall = closed_loop(predict, len(pool), clients)
    return request_ids, wall


def send_cached_feedback(
    gateways: Sequence[str], auth: dict[str, str], pool: list[FeedbackItem],
    request_ids: dict[int, str], clients: int, key_prefix: str | None = None,
) -> tuple[list[FeedbackOutcome], float]:
    """Each image's ``POST /feedback`` with its prediction's ``request_id`` (true labels), from
    ``clients`` closed-loop tasks, on the gateway that predicted it. With ``key_prefix``, call
    ``i`` carries ``Idempotency-Key: <key_prefix><i>``. Outcomes carry the ``request_id``."""

    async def send(http: httpx.AsyncClient, i: int) -> FeedbackOutcome:
        labels = {"request_id": request_ids[i], "boxes": pool[i].boxes}
        headers = auth if key_prefix is None else {**auth, "Idempotency-Key": f"{key_prefix}{i}"}
        t0 = time.perf_counter()
        try:
            response = await http.post(
                f"{round_robin(gateways, i)}/feedback", headers=headers,
                files={"file": ("feedback.jpg", pool[i].image, "image/jpeg")},
                data={"labels": json.dumps(labels)},
            )
        except httpx.HTTPError as exc:
            return FeedbackOutcome((time.perf_counter() - t0) * 1e3, None, 0, repr(exc),
                                   request_ids[i])
        ms = (time.perf_counter() - t0) * 1e3
        if response.status_code != 201:
            return FeedbackOutcome(ms, None, 0, f"{response.status_code} {response.text[:200]}",
                                   request_ids[i])
        body = response.json()
        return FeedbackOutcome(ms, body["feedback_id"], int(body["rows_written"]),
                               request_id=request_ids[i])

    return closed_loop(send, len(pool), clients)


def _gateway_cached_feedback(ctx: BenchContext, pool: list[FeedbackItem],
                             clients: int) -> dict[str, Any]:
    """Predict every image, then send its feedback: the cached path, one image per call."""
    gateways = [ctx.stack.gateway_url]
    # The users' predictions, made before they correct them (the serving section times these).
    request_ids, predict_wall = predict_first(gateways, pool)
    store, prod = open_store(ctx.stack.database_url), ctx.stack.data_dir / "prod_data.csv"
    before = rows_by_column(exported(store, prod), "feedback_id")
    lookups = cache_lookups(ctx.stack.gateway_url)
    outcomes, wall = send_cached_feedback(gateways, ctx.auth, pool, request_ids, clients)
    lookups = cache_lookups(ctx.stack.gateway_url) - lookups
    return {**rates(outcomes, wall), **_check_rows(exported(store, prod), before, outcomes),
            "cache_hits": lookups["hit"], "cache_misses": lookups["miss"],
            "predict_phase_s": round(predict_wall, 1)}


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
    return {**rates(outcomes, wall), "rows_in_file_added": None, "rows_lost": None}


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


def exported(store: Store, prod: Path) -> Path:
    """``prod`` once every committed row is exported to it (the gateway exports in the
    background; the count must not race it)."""
    ProdCsvExporter(store, prod).export()
    return prod


def store_append(folder: Path, dim: int, rows_per_append: int, calls: int,
                 threads: int) -> dict[str, Any]:
    """``FeedbackLedger.commit`` alone: one write transaction per call, rows and their total."""
    store = Store.sqlite(folder / "yoloserve.db")
    ledger = FeedbackLedger(store)
    vectors = np.random.default_rng(0).normal(size=(rows_per_append, dim)).astype(np.float32)

    def append(i: int) -> FeedbackOutcome:
        rows = [ProdRow(tuple(float(v) for v in vector), "circle", "circle",
                        "2026-01-01T00:00:00.000+00:00", f"append-{i}", "", "1", "")
                for vector in vectors]
        ledger.commit(rows)
        return FeedbackOutcome(0.0, f"append-{i}", len(rows))

    outcomes, wall = _threaded(append, calls, threads)
    prod = exported(store, folder / "prod_data.csv")
    return {**rates(outcomes, wall), **_check_rows(prod, Counter(), outcomes)}


def record_feedback(folder: Path, embedder: Embedder, pool: list[FeedbackItem],
                    predicted: list[Boxes], calls: int, threads: int) -> dict[str, Any]:
    """``FeedbackRecorder.record``: image and label files, match, embed, commit."""
    store = Store.sqlite(folder / "yoloserve.db")
    recorder = FeedbackRecorder(folder, embedder, FeedbackLedger(store))
    prod = folder / "prod_data.csv"

    def record(i: int) -> FeedbackOutcome:
        item = pool[i % len(pool)]
        gt = [(box["xyxy"], box["name"]) for box in item.boxes]
        result = recorder.record(item.image, gt, predicted[i % len(pool)], "1", None,
                                 list(CLASSES))
        return FeedbackOutcome(0.0, result.feedback_id, result.rows_written)

    record(0)  # untimed warm-up, as for the gateway (its rows are not in the check below)
    before = rows_by_column(exported(store, prod), "feedback_id")
    outcomes, wall = _threaded(record, calls, threads)
    return {**rates(outcomes, wall), **_check_rows(exported(store, prod), before, outcomes)}


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
    out: dict[str, Any] = {"writers": writers, "calls": calls, "gateway": {}, "cached": {},
                           "predict": {}, "recorder": {}, "append": {}}
    for name, pool in pools.items():
        out["gateway"][name] = _gateway_feedback(ctx, pool, calls, writers)
    # One distinct image per call (other seeds than the pools: nothing of them is cached yet).
    out["cached"]["shapes"] = _gateway_cached_feedback(
        ctx, feedback_pool(calls, seed=FEEDBACK_SEED + 1), writers)
    # The same images through /predict alone: what the feedback route's own prediction costs.
    out["predict"]["shapes"] = _gateway_predict(ctx, pools["shapes"], calls, writers)
    embedder = Embedder.load(ctx.stack.models_dir / "embedder" / "embedder.npz")
    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=ctx.workdir))
    for name, pool in pools.items():
        folder = root / f"recorder-{name}"
        out["recorder"][name] = record_feedback(folder, embedder, pool, _predictions(ctx, pool),
                                                calls, writers)
        rows = max(1, round(out["gateway"][name]["rows_per_call"] or 1))
        out["append"][name] = store_append(root / f"append-{name}", embedder.dim, rows,
                                           calls, writers)
        out["append"][name]["rows_per_append"] = rows
    _print_feedback(ctx, out)
    return out


def _print_feedback(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"feedback, {out['writers']} concurrent writers, {out['calls']} calls each")
    for column in ("path", "workload", "calls/s", "rows/call", "rows/s", "p50 ms", "p95 ms",
                   "failed", "rows lost"):
        table.add_column(column, justify="left" if column in ("path", "workload") else "right")
    for path in WRITE_PATHS:
        for workload, f in out.get(path, {}).items():
            table.add_row(path, workload, f"{f['calls_per_s']}", f"{f['rows_per_call']}",
                          f"{f['rows_per_s']}", f"{f['p50_ms']}", f"{f['p95_ms']}",
                          f"{f['failed']}", f"{f['rows_lost']}")
    ctx.console.print(table)
    shapes, cached = out["gateway"]["shapes"], out["cached"]["shapes"]
    ctx.console.print(f"  goal: gateway >= {GOAL_FEEDBACK_ROWS_PER_S:.0f} rows/s with 0 lost: "
                      f"{cached['rows_per_s']} rows/s, {cached['rows_lost']} lost after /predict "
                      f"(cache {cached['cache_hits']} hits, {cached['cache_misses']} misses); "
                      f"{shapes['rows_per_s']} rows/s, {shapes['rows_lost']} lost without it")


def feedback_markdown(report: dict[str, Any], feedback: dict[str, Any]) -> list[str]:
    """The feedback figures of a report as one Markdown table (write path x workload)."""
    lines = [
        "",
        f"Feedback: {feedback['writers']} concurrent writers, {feedback['calls']} calls per "
        "table row.",
        "",
        "| write path | labels | calls/s | rows/call | rows/s | p50 ms | p95 ms | failed | "
        "rows acknowledged | rows added to the CSV | rows lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, label in WRITE_PATHS.items():
        for workload, f in feedback.get(path, {}).items():
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
