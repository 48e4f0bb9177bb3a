"""The loop section: from the feedback that reaches k rows to the retrained version serving.

The bench moves the earlier sections' feedback aside, restarts its gateway with
``RETRAIN_EVERY_K=k`` and a reference dataset (``RETRAIN_REF_DIR``), posts generated images with
their true labels to ``POST /feedback`` until one answer says a retrain started, then polls
``GET /models`` and ``POST /predict`` until the new version answers. Marks along the way
(registry record, the job's log, ``results.csv``, the new ``.mar``) give the time of each step:
dataset, training, evaluation and packaging, the swap. A real fine-tune: ~4-5 min on 2 cores.

    python -m benchmarks --sections loop --loop-k 10
    python -m benchmarks --sections loop --loop-generate-ref   # time the reference dataset too
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.table import Table
from sqlalchemy import delete

from benchmarks.context import BenchContext
from benchmarks.images import feedback_boxes
from benchmarks.timeline import log_time, step_durations
from yoloserve import paths
from yoloserve.feedback.ledger import LOCK as FEEDBACK_LOCK
from yoloserve.store.engine import open_store
from yoloserve.store.tables import FeedbackExportRow, FeedbackRowRecord, IdempotencyKeyRow
from yoloserve.training.dataset import iter_images

LOOP_SEED = 777  # the loop's feedback images: neither the reference nor the feedback section's
GOAL_LOOP_S = 600.0  # issue 3: k-th feedback to the new version serving in <= 10 min, 2 cores
GATEWAY_START_TIMEOUT_S = 90.0


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


def _reference_dir(ctx: BenchContext, out: dict[str, Any]) -> Path:
    """The reference dataset of the retrain: given, ``data/shapes``, or generated (timed)."""
    opts = ctx.options
    ref_dir = opts.loop_ref_dir
    if ref_dir is None and not opts.loop_generate_ref:
        existing = paths.DATA_DIR / "shapes"
        ref_dir = existing if (existing / "images" / "train").is_dir() else None
    if ref_dir is None:
        # What the first job of a fresh platform does itself (retrain._ensure_reference): timed
        # here, before the clock of the loop starts, and reported on its own.
        from yoloserve.training.dataset import generate_dataset

        ref_dir = ctx.workdir / "shapes"
        ctx.console.print(f"[bold]loop[/bold]: generating the reference dataset in {ref_dir}")
        t0 = time.perf_counter()
        generate_dataset(ref_dir)
        out["reference_generated_s"] = round(time.perf_counter() - t0, 1)
    return ref_dir


def _restart_gateway(ctx: BenchContext, k: int, ref_dir: Path) -> dict[str, str]:
    """Restart the bench's gateway with the loop's retrain settings; returns its RETRAIN_*."""
    stack = ctx.stack
    # Earlier sections' thousands of feedback images would be retrained on, and their rows
    # counted towards k: start clean (the rows are the store's; the CSV is their export).
    stack.stop_gateway()
    _move_aside(stack.data_dir / "feedback", "bench-before-loop")
    _move_aside(stack.data_dir / "prod_data.csv", "bench-before-loop")
    with open_store(stack.database_url).write(lock=FEEDBACK_LOCK) as session:
        for table in (FeedbackRowRecord, IdempotencyKeyRow, FeedbackExportRow):
            session.execute(delete(table))
    stack.extra_env.update(RETRAIN_EVERY_K=str(k), RETRAIN_REF_DIR=str(ref_dir))
    stack.start_gateway(GATEWAY_START_TIMEOUT_S)
    # The environment the gateway was started with (the port only sets GATEWAY_PORT): the
    # retrain job it starts inherits these settings.
    env = stack.environment(urlsplit(stack.gateway_url).port or 0)
    return {key: value for key, value in env.items() if key.startswith("RETRAIN_")}


def loop_section(ctx: BenchContext) -> dict[str, Any]:
    """Time from the feedback that reaches k rows to the retrained version answering /predict."""
    opts, stack = ctx.options, ctx.stack
    k = opts.loop_k
    out: dict[str, Any] = {"every_k": k}
    ref_dir = _reference_dir(ctx, out)
    out["reference_dir"] = str(ref_dir)
    settings = _restart_gateway(ctx, k, ref_dir)
    out["retrain_env"] = settings
    ctx.console.print(f"[bold]loop[/bold]: k={k}, {settings}")

    with httpx.Client(base_url=stack.gateway_url, timeout=120.0) as http:
        old = http.get("/models").json()["default_version"]
        images = rows = 0
        job_id = None
        t_first = time.time()
        for image, shapes in iter_images(20 * k, LOOP_SEED):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            response = http.post("/feedback", headers=ctx.auth,
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
    _print_loop(ctx, out)
    return out


def _print_loop(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"retrain loop: k={out['every_k']}, feedback image "
                        f"{out['feedback_images']} ({out['feedback_rows']} rows) -> "
                        f"v{out['new_version']}")
    for column in ("mark", "s after the k-th feedback", "s since the previous mark"):
        table.add_column(column, justify="left" if column == "mark" else "right")
    for mark, row in _loop_rows(out):
        table.add_row(mark, *row)
    ctx.console.print(table)
    ctx.console.print(f"  total: k-th feedback -> /predict answers v{out['new_version']}: "
                      f"{out['total_s']} s (goal <= {GOAL_LOOP_S:.0f} s)")
    if "reference_generated_s" in out:
        ctx.console.print(f"  reference dataset generated beforehand in "
                          f"{out['reference_generated_s']} s (not in the total)")


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def loop_markdown(report: dict[str, Any], loop: dict[str, Any]) -> list[str]:
    """The loop figures of a report: what the job trained on, and one row per time mark."""
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
