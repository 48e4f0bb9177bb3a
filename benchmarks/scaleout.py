"""The scaleout section: keyed feedback through one gateway on SQLite and N on PostgreSQL, none
lost or duplicated, and how fast the gateway answers an intent (activate, retrain).

Two deployments in one run, the same work each:

  sqlite    the bench's own gateway over its SQLite store
  postgres  ``--scaleout-gateways`` (3) more gateway processes, supervised programs of the same
            stack in front of the same TorchServe, over one real PostgreSQL the section starts
            (devstack.postgres.PostgresServer, a throwaway cluster) and seeds with the stack's
            versions; calls spread round-robin over the replicas

Feedback: ``--scaleout-calls`` distinct images (true labels) are each sent to ``POST /predict``
first (untimed), then ``--scaleout-writers`` closed-loop tasks send each image's ``POST
/feedback`` with that prediction's ``request_id`` and an ``Idempotency-Key``, to the replica that
predicted it (the prediction cache is per process): the ``cached`` path of the feedback section
(its helpers). Afterwards every acknowledged row is counted back per request, in the store and
in the CSV exported from it: lost, duplicated (benchmarks.rows.tally).

Intents: ``--scaleout-intents`` requests each of ``POST /models/{default}/activate`` and ``POST
/retrain``, one at a time, with nothing else running: the time to the 202. No controller runs in
the bench, so the section clears each job it made right after its answer (untimed: the job
becomes ``failed``, reason :data:`CLEARED`), which also lets the next retrain get its 202 rather
than a 409 (a 409 is counted apart). Running the controller instead would carry out real swaps
and fine-tunes on the two cores being measured.

    python -m benchmarks --sections scaleout --scaleout-calls 400 --scaleout-writers 32
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.table import Table
from sqlalchemy import select

from benchmarks.context import BenchContext
from benchmarks.feedback import (
    FEEDBACK_SEED,
    FeedbackOutcome,
    cache_lookups,
    exported,
    feedback_pool,
    predict_first,
    rates,
    round_robin,
    send_cached_feedback,
)
from benchmarks.rows import Tally, rows_by_pair, tally
from devstack.ports import free_ports
from devstack.postgres import PostgresServer
from devstack.supervisor import Program
from devstack.waiting import url_ready
from yoloserve import paths
from yoloserve.machine import cpu_model
from yoloserve.modelserver.registry import Registry, utcnow
from yoloserve.store.engine import Store, open_store
from yoloserve.store.tables import FeedbackRowRecord

# Goals (issue 19): rows/s of 32 writers on 2 cores, and the p99 of an intent's 202.
GOAL_ROWS_PER_S = {"sqlite": 400.0, "postgres": 300.0}
GOAL_INTENT_P99_MS = 100.0
CLEARED = "benchmark latency probe: cleared by the bench, never carried out"
INTENT_WARMUP = 3
DEPLOYMENTS = {"sqlite": "1 gateway, SQLite", "postgres": "{n} gateways, PostgreSQL"}
# Images of each deployment: other seeds than the feedback section's, so nothing is cached yet.
SEEDS = {"sqlite": FEEDBACK_SEED + 2, "postgres": FEEDBACK_SEED + 3}


def stored_rows(store: Store, request_ids: Sequence[str]) -> dict[str, Counter[str]]:
    """Rows in the store per ``request_id`` (of these only), then per ``feedback_id``."""
    found: dict[str, Counter[str]] = {}
    with store.read() as session:
        for start in range(0, len(request_ids), 500):
            chunk = list(request_ids[start:start + 500])
            query = select(FeedbackRowRecord.request_id, FeedbackRowRecord.feedback_id).where(
                FeedbackRowRecord.request_id.in_(chunk))
            for request_id, feedback_id in session.execute(query):
                found.setdefault(request_id, Counter())[feedback_id] += 1
    return found


def count_back(outcomes: list[FeedbackOutcome], store: Store, csv: Path) -> dict[str, Any]:
    """Every acknowledged row, per request, in the store and in the CSV exported from it."""
    acknowledged = {o.request_id: (o.feedback_id, o.rows) for o in outcomes
                    if o.error is None and o.request_id and o.feedback_id}
    unanswered = {o.request_id for o in outcomes if o.error is not None and o.request_id}
    sent = [o.request_id for o in outcomes if o.request_id]
    in_store = tally(acknowledged, stored_rows(store, sent), unanswered)
    in_csv = tally(acknowledged, _only(rows_by_pair(exported(store, csv), "request_id",
                                                    "feedback_id"), sent), unanswered)
    return {"store": _tally_json(in_store), "csv": _tally_json(in_csv)}


def _only(found: Mapping[str, Counter[str]], keys: Sequence[str]) -> dict[str, Counter[str]]:
    return {k: found[k] for k in keys if k in found}


def _tally_json(t: Tally) -> dict[str, int]:
    return {"rows_acknowledged": t.acknowledged, "rows_found": t.found, "rows_lost": t.lost,
            "rows_duplicated": t.duplicated, "rows_unacknowledged": t.unacknowledged}


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max in ms (None without any)."""
    if not latencies_ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(latencies_ms)
    return {"p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(float(values.max()), 1)}


def _intent_latency(gateways: Sequence[str], admin_key: str, registry: Registry, path: str,
                    requests: int) -> dict[str, Any]:
    """``requests`` POSTs of ``path`` one at a time, round-robin; each job cleared (untimed)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    with httpx.Client(timeout=30.0, headers={"X-API-Key": admin_key}) as http:
        for i in range(-INTENT_WARMUP, requests):
            t0 = time.perf_counter()
            response = http.post(f"{round_robin(gateways, i)}{path}")
            ms = (time.perf_counter() - t0) * 1e3
            if response.status_code == 202:
                registry.transition_job(response.json()["job_id"], ("queued",), state="failed",
                                        reason=CLEARED, finished_at=utcnow())
            if i >= 0:
                statuses[response.status_code] += 1
                if response.status_code == 202:
                    latencies.append(ms)
    return {"requests": requests, "accepted": statuses[202], "conflicts": statuses[409],
            "other": sum(n for s, n in statuses.items() if s not in (202, 409)),
            **percentiles(latencies), "latencies_ms": [round(v, 2) for v in latencies]}


def run_deployment(ctx: BenchContext, name: str, gateways: Sequence[str], store: Store,
                   csv: Path) -> dict[str, Any]:
    """Keyed feedback after predictions, counted back; then the intents' latency."""
    opts = ctx.options
    pool = feedback_pool(opts.scaleout_calls, seed=SEEDS[name])
    request_ids, predict_wall = predict_first(gateways, pool)
    lookups = sum((cache_lookups(g) for g in gateways), Counter())
    key_prefix = f"scaleout-{name}-{uuid.uuid4().hex[:8]}-"
    outcomes, wall = send_cached_feedback(gateways, ctx.auth, pool, request_ids,
                                          opts.scaleout_writers, key_prefix)
    lookups = sum((cache_lookups(g) for g in gateways), Counter()) - lookups
    out: dict[str, Any] = {
        "gateways": len(gateways), **rates(outcomes, wall), **count_back(outcomes, store, csv),
        "cache_hits": lookups["hit"], "cache_misses": lookups["miss"],
        "predict_phase_s": round(predict_wall, 1),
    }
    registry = Registry(store)
    default = registry.load().default_version
    out["activate"] = _intent_latency(gateways, ctx.stack.admin_key, registry,
                                      f"/models/{default}/activate", opts.scaleout_intents)
    out["retrain"] = _intent_latency(gateways, ctx.stack.admin_key, registry, "/retrain",
                                     opts.scaleout_intents)
    return out


def _replicas(ctx: BenchContext, server: PostgresServer, n: int) -> tuple[list[str], Path]:
    """Start ``n`` gateways over ``server`` (its registry seeded with the stack's versions),
    sharing a data folder of their own; their URLs and that folder."""
    registry = Registry(Store(server.url))
    versions = ctx.stack.registry.load()
    with registry.update() as data:
        data.name, data.classes = versions.name, versions.classes
        data.default_version, data.versions = versions.default_version, versions.versions
    root = ctx.workdir / "scaleout"
    data_dir, run_dir = root / "data", root / "run"
    run_dir.mkdir(parents=True)
    shutil.copytree(ctx.stack.data_dir / "samples", data_dir / "samples")
    shared = {"STORE_DATABASE_URL": server.url, "YOLOSERVE_DATA_DIR": str(data_dir),
              "YOLOSERVE_RUN_DIR": str(run_dir)}
    urls = []
    for i, port in enumerate(free_ports(n)):
        url = f"http://127.0.0.1:{port}"
        program = Program(f"scaleout-gw-{i}", [sys.executable, "-m", "gateway"],
                          env={**ctx.stack.gateway_variables(port), **shared}, cwd=paths.ROOT,
                          ready=url_ready(f"{url}/ready"))
        ctx.stack.start_program(program, 120)
        urls.append(url)
    return urls, data_dir


def scaleout_section(ctx: BenchContext) -> dict[str, Any]:
    """Keyed feedback rows/s via 1 gateway on SQLite and N on PostgreSQL; intents' 202 latency.

    Every acknowledged row is counted back (lost, duplicated) in the store and the CSV.
    """
    opts = ctx.options
    n = opts.scaleout_gateways
    ctx.console.print(f"[bold]scaleout[/bold]: {opts.scaleout_calls} keyed feedbacks, "
                      f"{opts.scaleout_writers} writers; 1 gateway on SQLite, then {n} on "
                      f"PostgreSQL; {opts.scaleout_intents} activate and retrain intents each")
    out: dict[str, Any] = {"cpu_model": cpu_model(), "calls": opts.scaleout_calls,
                           "writers": opts.scaleout_writers, "intents": opts.scaleout_intents,
                           "goals": {"rows_per_s": GOAL_ROWS_PER_S,
                                     "intent_p99_ms": GOAL_INTENT_P99_MS},
                           "deployments": {}}
    out["deployments"]["sqlite"] = run_deployment(
        ctx, "sqlite", [ctx.stack.gateway_url], open_store(ctx.stack.database_url),
        ctx.stack.data_dir / "prod_data.csv")
    names = [f"scaleout-gw-{i}" for i in range(n)]
    t0 = time.perf_counter()
    with PostgresServer() as server:  # this thread lives as long as the server (PDEATHSIG)
        try:
            gateways, data_dir = _replicas(ctx, server, n)
            ctx.console.print(f"  PostgreSQL + {n} gateways ready in "
                              f"{time.perf_counter() - t0:.0f} s")
            out["deployments"]["postgres"] = run_deployment(
                ctx, "postgres", gateways, Store(server.url), data_dir / "prod_data.csv")
        finally:
            ctx.stack.remove_programs(names)
    _print(ctx, out)
    return out


def verdicts(out: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) per goal of the section's figures."""
    rows = []
    for name, f in out["deployments"].items():
        goal = out["goals"]["rows_per_s"][name]
        label = DEPLOYMENTS[name].format(n=f["gateways"])
        bad = {k: f[k]["rows_lost"] + f[k]["rows_duplicated"] for k in ("store", "csv")}
        rows.append((f"{label}: >= {goal:.0f} rows/s, {out['writers']} writers, 0 lost, "
                     "0 duplicated",
                     f"{f['rows_per_s']} rows/s, {f['store']['rows_lost']} lost, "
                     f"{f['store']['rows_duplicated']} duplicated (CSV: {f['csv']['rows_lost']}"
                     f", {f['csv']['rows_duplicated']}), {f['failed']} failed",
                     (f["rows_per_s"] or 0) >= goal and not any(bad.values())
                     and f["failed"] == 0))
        for intent in ("activate", "retrain"):
            i = f[intent]
            p99 = i["p99_ms"]
            rows.append((f"{label}: {intent} 202 p99 <= {out['goals']['intent_p99_ms']:.0f} ms",
                         f"p99 {p99} ms ({i['accepted']} of {i['requests']} 202)",
                         p99 is not None and p99 <= out["goals"]["intent_p99_ms"]
                         and i["accepted"] == i["requests"]))
    return rows


def _print(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"scaleout, {out['writers']} writers, {out['calls']} keyed feedbacks "
                        f"after /predict per deployment; {out['cpu_model']}")
    for column in ("deployment", "calls/s", "rows/s", "goal\nrows/s", "p50 ms", "p95 ms",
                   "failed", "lost", "dupli-\ncated", "CSV\nlost/dup", "cache\nhit/miss",
                   "activate ms\np50/p99", "retrain ms\np50/p99"):
        table.add_column(column, justify="left" if column == "deployment" else "right",
                         no_wrap=column == "deployment")
    for name, f in out["deployments"].items():
        table.add_row(
            DEPLOYMENTS[name].format(n=f["gateways"]), f"{f['calls_per_s']}",
            f"{f['rows_per_s']}", f">= {out['goals']['rows_per_s'][name]:.0f}",
            f"{f['p50_ms']}", f"{f['p95_ms']}", f"{f['failed']}", f"{f['store']['rows_lost']}",
            f"{f['store']['rows_duplicated']}",
            f"{f['csv']['rows_lost']}/{f['csv']['rows_duplicated']}",
            f"{f['cache_hits']}/{f['cache_misses']}",
            f"{f['activate']['p50_ms']}/{f['activate']['p99_ms']}",
            f"{f['retrain']['p50_ms']}/{f['retrain']['p99_ms']}")
    ctx.console.print(table)
    for goal, measured, met in verdicts(out):
        ctx.console.print(f"  goal {goal}: {measured} -> {'met' if met else 'NOT met'}")


def scaleout_markdown(report: dict[str, Any], out: dict[str, Any]) -> list[str]:
    """The scaleout figures: one row per deployment, then the goals."""
    lines = [
        "",
        f"Scale-out: {out['writers']} writers, {out['calls']} keyed feedbacks after `/predict` "
        f"per deployment, {out['intents']} intents of each kind; {out['cpu_model']}.",
        "",
        "| deployment | calls/s | rows/s | p50 ms | p95 ms | failed | rows acknowledged | "
        "lost | duplicated | CSV lost / duplicated | activate p50 / p99 ms | "
        "retrain p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in out["deployments"].items():
        lines.append(
            f"| {DEPLOYMENTS[name].format(n=f['gateways'])} | {f['calls_per_s']} | "
            f"{f['rows_per_s']} | {f['p50_ms']} | {f['p95_ms']} | {f['failed']} | "
            f"{f['store']['rows_acknowledged']} | {f['store']['rows_lost']} | "
            f"{f['store']['rows_duplicated']} | {f['csv']['rows_lost']} / "
            f"{f['csv']['rows_duplicated']} | {f['activate']['p50_ms']} / "
            f"{f['activate']['p99_ms']} | {f['retrain']['p50_ms']} / "
            f"{f['retrain']['p99_ms']} |")
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {goal} | {measured} | {'yes' if met else '**no**'} |"
              for goal, measured, met in verdicts(out)]
    return lines
