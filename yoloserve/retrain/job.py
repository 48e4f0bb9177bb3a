"""The retrain job: fine-tune the serving model on feedback, judge it, hot-swap it if it holds up.

One job, start to end (``run_job``)::

    queued --> running --> build dataset (reference sample + feedback, held-out eval slice)
                       --> fine-tune from the default version's weights     } one spawned child,
                       --> evaluate candidate and current on the same eval  } killed at timeout_s
                       --> gate: candidate.map50 >= current.map50 - tolerance
                             yes: package as version N (parent = current) --> deploy --> succeeded
                             no:  package as version N, status rejected            --> rejected
    any exception (or the deadline) -------------------------------------------------> failed

Failure rules: nothing is promoted unless every step before the swap worked; the serving version
keeps serving whatever happens (the swap itself rolls back, see ``yoloserve.modelserver.deploy``;
on KServe a canary that fails its checks is rolled back and the job ends failed, see
``yoloserve.modelserver.rollout.kserve``);
the job record always ends in a final state with a reason, and the registry is only ever changed by
its own atomic writes.

The steps themselves live in ``yoloserve.retrain.steps``; this module only runs them in sequence
under the job's deadline, recording each phase in the job (``yoloserve.retrain.progress``;
``yoloserve.retrain.pipeline`` runs the same steps as KFP components).

Example:
    >>> settings = RetrainSettings(epochs=1)
    >>> job_id = start_job_process(settings, trigger="api")  # doctest: +SKIP
    >>> Registry().get_job(job_id).state  # doctest: +SKIP
    'queued'
"""


from __future__ import annotations

import logging
import os
import time

from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain import steps
from yoloserve.retrain.deadline import JobTimedOut, RetrainFailed, run_with_deadline
from yoloserve.retrain.progress import ProgressReporter
from yoloserve.retrain.settings import RetrainSettings, job_dir
from yoloserve.retrain.steps import finish
from yoloserve.store.engine import open_store
from yoloserve.tracking import mirror
from yoloserve.tracking.runs import RunTracker
from yoloserve.tracking.settings import TrackingSettings

__all__ = ["finish", "run_job"]

logger = logging.getLogger("yoloserve.retrain")


def run_job(job_id: str, settings: RetrainSettings, registry: Registry | None = None) -> RetrainJob:
    """Run job ``job_id`` (already recorded) to its end, synchronously; returns its final record.

    Never raises for a failed step: the job ends ``failed`` with the reason, and the serving
    version keeps serving. ``KeyboardInterrupt``/``SystemExit`` are recorded, then re-raised.
    """
    registry = registry or Registry(open_store(settings.store.url))
    deadline = time.monotonic() + settings.timeout_s
    job = registry.update_job(job_id, state="running", started_at=utcnow(), pid=os.getpid())
    tracking = TrackingSettings()
    tracker = RunTracker.start(tracking, settings.run_dir, name=f"retrain {job_id}", tags={
        "yoloserve.kind": "retrain", "yoloserve.job_id": job_id})
    tracker.params(job_id=job_id, trigger=job.trigger, epochs=settings.epochs,
                   lr0=settings.lr0, imgsz=settings.imgsz, batch=settings.batch,
                   optimizer=settings.optimizer, warmup_epochs=settings.warmup_epochs,
                   seed=settings.seed, tolerance=settings.tolerance,
                   holdout_pct=settings.holdout_pct)
    try:
        done = _run(job_id, settings, registry, deadline, tracker)
        tracker.tags(**{"yoloserve.state": done.state, "yoloserve.reason": done.reason})
        tracker.end("FINISHED" if done.state in ("succeeded", "rejected") else "FAILED")
        # After the swap, never before it: MLflow mirrors the registry, it never gates it.
        mirror.sync_quietly(registry, tracking, settings.run_dir)
        return done
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, RetrainFailed) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            reason = "the job process was stopped"
        expected = isinstance(exc, RetrainFailed)  # its message says it all: no traceback
        logger.error("job %s failed: %s", job_id, reason, exc_info=not expected)
        job = finish(registry, job_id, "failed", reason)
        if not isinstance(exc, Exception):
            raise  # stopping (SIGTERM): no MLflow calls on the way out; the next sync repairs
        tracker.tags(**{"yoloserve.state": "failed", "yoloserve.reason": reason})
        tracker.end("FAILED")
        mirror.sync_quietly(registry, tracking, settings.run_dir)
        return job


def _run(job_id: str, settings: RetrainSettings, registry: Registry, deadline: float,
         tracker: RunTracker) -> RetrainJob:
    parent = steps.serving_parent(registry, job_id)
    tracker.params(parent_version=parent["version"], parent_sha256=parent["sha256"])
    folder = job_dir(settings, job_id)
    progress = ProgressReporter(registry, job_id)
    progress.phase("dataset")
    manifest = steps.build_dataset(settings, parent["classes"], folder / "data", registry, job_id)
    logger.info("job %s: parent v%s, data %s", job_id, parent["version"], manifest["counts"])
    tracker.params(**{f"data.{k}": v for k, v in manifest["counts"].items()},
                   **{"data.manifest_sha256": manifest["trained_on"]["manifest_sha256"],
                      "eval_set": manifest["eval_set"]})
    tracker.artifact(manifest["manifest"], "dataset")
    bench = steps.benchmark_set(settings, parent["classes"], folder / "benchmark")
    champion_bench = registry.get(parent["version"]).benchmark
    needs_champion = False
    if bench is not None:
        tracker.params(benchmark_set=bench["set"])
        scored_on = champion_bench.get("set", {}).get("manifest_sha256")
        needs_champion = scored_on != bench["set"]["manifest_sha256"]
    parent_weights = steps.champion_weights(settings, parent, folder / "parent.pt")
    result = run_with_deadline(
        steps.train_and_evaluate,
        (manifest["data_yaml"], parent_weights, folder / "train", settings,
         {"run_id": tracker.run_id if tracker.active else None, "eval_set": manifest["eval_set"],
          "benchmark": bench, "champion_benchmark": needs_champion}, job_id),
        deadline - time.monotonic(),
    )
    metrics = {"candidate": result["candidate"], "current": result["current"]}
    tracker.metrics(metrics)
    benchmarks = result.get("benchmark", {})
    tracker.metrics({f"benchmark.{side}": b for side, b in benchmarks.items()})
    if "current" in benchmarks:
        _set_benchmark(registry, parent["version"], benchmarks["current"])
    tracker.artifact(result["weights"], "weights")
    tracker.artifact(result.get("plots", folder / "missing"), "plots")
    decision = steps.decide(settings, registry, metrics, parent["version"], job_id)
    tracker.params(**{"gate.promote": decision.promote, "gate.reason": decision.reason})
    if time.monotonic() > deadline:
        raise JobTimedOut(f"timed out after {settings.timeout_s:.0f} s (before promotion)")
    progress.phase("packaging")
    record = steps.package_candidate(
        settings, registry, result["weights"], parent_version=parent["version"],
        candidate_metrics=result["candidate"], trained_on=manifest["trained_on"],
        decision=decision, job_id=job_id, benchmark=benchmarks.get("candidate"),
        tracker=tracker, data_yaml=manifest["data_yaml"], bench=bench,
    )
    tracker.params(version=record["version"])
    tracker.artifact(settings.store_dir / record["mar"], "mar")
    if decision.promote:
        if settings.deploy:
            progress.phase("swapping")
        steps.deploy(settings, registry, record["version"], parent_version=parent["version"],
                     decision_reason=decision.reason, job_id=job_id)
    return registry.get_job(job_id)


def _set_benchmark(registry: Registry, version: str, scores: dict[str, object]) -> None:
    with registry.update() as data:
        data.get(version).benchmark = dict(scores)
