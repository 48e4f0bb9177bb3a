"""The retrain job: fine-tune the serving model on feedback, judge it, hot-swap it if it holds up.

One job, start to end (``run_job``)::

    queued --> running --> build dataset (reference sample + feedback, held-out eval slice)
                       --> fine-tune from the default version's weights     } one forked child,
                       --> evaluate candidate and current on the same eval  } killed at timeout_s
                       --> gate: candidate.map50 >= current.map50 - tolerance
                             yes: package as version N (parent = current) --> deploy --> succeeded
                             no:  package as version N, status rejected            --> rejected
    any exception (or the deadline) -------------------------------------------------> failed

Failure rules: nothing is promoted unless every step before the swap worked; the serving version
keeps serving whatever happens (the swap itself rolls back, see ``yoloserve.modelserver.deploy``;
on KServe a canary that fails its checks is rolled back and the job ends failed, see
``yoloserve.modelserver.kserve``);
the job record always ends in a final state with a reason, and the registry is only ever changed by
its own atomic writes.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yoloserve.modelserver.deployers import (
    DeployResult,
    DeploySettings,
    SwapOptions,
    deployer_from_settings,
    run_sync,
)
from yoloserve.modelserver.packaging import METRIC_KEYS, PackagingError, extract_weights, package
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain.deadline import JobTimedOut, RetrainFailed, run_with_deadline
from yoloserve.retrain.gate import GateDecision, gate
from yoloserve.retrain.settings import RetrainSettings, job_dir
from yoloserve.training import train as training
from yoloserve.training.retrain_data import RetrainData, build_retrain_dataset

logger = logging.getLogger("yoloserve.retrain")


def _train_and_evaluate(
    data_yaml: Path, parent_weights: Path, out_dir: Path, settings: RetrainSettings
) -> dict[str, Any]:
    """Fine-tune, then evaluate candidate and current on the same eval split (runs forked)."""
    best = training.train(
        data_yaml, out_dir, weights=parent_weights, epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, seed=settings.seed, lr0=settings.lr0, optimizer=settings.optimizer,
        warmup_epochs=settings.warmup_epochs, name="candidate",
    )
    # The last epoch, not Ultralytics' best.pt: best.pt is picked on the eval split, and a
    # candidate chosen on the data that judges it would get an unfair edge at the gate.
    last = best.with_name("last.pt")
    weights = last if last.is_file() else best
    candidate = training.evaluate(weights, data_yaml, split="test", imgsz=settings.imgsz,
                                  batch=settings.batch)
    current = training.evaluate(parent_weights, data_yaml, split="test", imgsz=settings.imgsz,
                                batch=settings.batch)
    return {"weights": str(weights), "candidate": candidate.to_dict(),
            "current": current.to_dict()}


# ----------------------------------------------------------------------------------- the job


def _ensure_reference(ref_dir: Path) -> None:
    if (ref_dir / "images" / "train").is_dir():
        return
    from yoloserve.training.dataset import generate_dataset

    # The same dataset `python -m scripts.train dataset` writes (same counts, same seed).
    logger.info("reference dataset missing: generating it in %s", ref_dir)
    generate_dataset(ref_dir)


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    out["eval_images"] = metrics.get("images", 0)
    return out


def finish(registry: Registry, job_id: str, state: str, reason: str, **extra: Any) -> RetrainJob:
    """Record the job's final state with its reason and end time."""
    return registry.update_job(job_id, state=state, reason=reason, finished_at=utcnow(), **extra)


def run_job(job_id: str, settings: RetrainSettings, registry: Registry | None = None) -> RetrainJob:
    """Run job ``job_id`` (already recorded) to its end, synchronously; returns its final record.

    Never raises for a failed step: the job ends ``failed`` with the reason, and the serving
    version keeps serving. ``KeyboardInterrupt``/``SystemExit`` are recorded, then re-raised.
    """
    registry = registry or Registry(settings.registry_path)
    deadline = time.monotonic() + settings.timeout_s
    registry.update_job(job_id, state="running", started_at=utcnow(), pid=os.getpid())
    try:
        return _run(job_id, settings, registry, deadline)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, RetrainFailed) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            reason = "the job process was stopped"
        expected = isinstance(exc, RetrainFailed)  # its message says it all: no traceback
        logger.error("job %s failed: %s", job_id, reason, exc_info=not expected)
        job = finish(registry, job_id, "failed", reason)
        if not isinstance(exc, Exception):
            raise
        return job


def _run(job_id: str, settings: RetrainSettings, registry: Registry, deadline: float) -> RetrainJob:
    data = registry.load()
    if data.default_version is None:
        raise RetrainFailed("the registry has no default version to fine-tune from")
    parent = data.get(data.default_version)
    registry.update_job(job_id, parent=parent.version)
    folder = job_dir(settings, job_id)

    _ensure_reference(settings.ref_dir)
    try:
        dataset: RetrainData = build_retrain_dataset(
            folder / "data", settings.ref_dir, settings.feedback_dir, data.classes,
            ref_train_images=settings.ref_train_images, ref_eval_images=settings.ref_eval_images,
            holdout_pct=settings.holdout_pct, oversample_feedback=settings.oversample_feedback,
            seed=settings.seed,
        )
    except ValueError as exc:
        raise RetrainFailed(f"no usable dataset: {exc}") from exc
    counts = {
        "ref_train": dataset.ref_train, "ref_eval": dataset.ref_eval,
        "feedback_train": dataset.feedback_train, "feedback_eval": dataset.feedback_eval,
    }
    registry.update_job(job_id, data=counts)
    logger.info("job %s: parent v%s, data %s", job_id, parent.version, counts)

    try:
        parent_weights = extract_weights(
            settings.store_dir / parent.mar, parent.sha256, folder / "parent.pt"
        )
    except PackagingError as exc:
        raise RetrainFailed(f"the serving version's weights: {exc}") from exc
    result = run_with_deadline(
        _train_and_evaluate, (dataset.data_yaml, parent_weights, folder / "train", settings),
        deadline - time.monotonic(),
    )
    metrics = {"candidate": result["candidate"], "current": result["current"]}
    registry.update_job(job_id, metrics=metrics)
    if time.monotonic() > deadline:
        raise JobTimedOut(f"timed out after {settings.timeout_s:.0f} s (before promotion)")

    decision = gate(result["candidate"], result["current"], settings.tolerance)
    if decision.promote and registry.load().default_version != parent.version:
        now = registry.load().default_version
        decision = GateDecision(False, f"the default changed from v{parent.version} to v{now} "
                                       "while the job ran; not promoting over it")
    trained_on = {"ref_images": dataset.ref_train, "feedback_images": dataset.feedback_train}
    record = package(
        Path(result["weights"]), registry, parent=parent.version,
        metrics=_headline(result["candidate"]), store_dir=settings.store_dir,
        trained_on=trained_on, make_default=False, reuse=False,
    )
    if not decision.promote:
        registry.set_status(record.version, "rejected")
        logger.info("job %s: rejected v%s: %s", job_id, record.version, decision.reason)
        return finish(registry, job_id, "rejected", decision.reason,
                       candidate_version=record.version)

    registry.update_job(job_id, candidate_version=record.version)
    if not settings.deploy:
        return finish(registry, job_id, "succeeded",
                       f"{decision.reason}; packaged as v{record.version}, not deployed "
                       "(RETRAIN_DEPLOY=false)")
    try:
        result = _deploy(settings, registry, record.version)
    except Exception as exc:
        raise RetrainFailed(
            f"{decision.reason}; packaged as v{record.version}, but the hot swap failed "
            f"({type(exc).__name__}: {exc}); v{parent.version} keeps serving"
        ) from exc
    if not result.promoted:
        raise RetrainFailed(
            f"{decision.reason}; packaged as v{record.version}, not promoted: {result.reason}"
        )
    logger.info("job %s: v%s serves now (%s)", job_id, record.version, result.reason)
    return finish(registry, job_id, "succeeded", f"{decision.reason}; v{record.version} serves")


def _deploy(settings: RetrainSettings, registry: Registry, version: str) -> DeployResult:
    """Roll the promoted candidate out with the deployer ``DEPLOY_BACKEND`` names."""
    swap = SwapOptions(
        management_url=settings.management_url, inference_url=settings.inference_url,
        model_name=settings.model_name, drain_s=settings.drain_s,
        worker_timeout_s=settings.worker_timeout_s,
    )
    deployer = deployer_from_settings(DeploySettings(), registry, swap)
    return run_sync(deployer.deploy(version))
