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

The steps themselves live in ``yoloserve.retrain.steps``; this module only runs them in sequence
under the job's deadline (``yoloserve.retrain.pipeline`` runs the same steps as KFP components).

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
from yoloserve.retrain.settings import RetrainSettings, job_dir
from yoloserve.retrain.steps import finish

__all__ = ["finish", "run_job"]

logger = logging.getLogger("yoloserve.retrain")


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
    parent = steps.serving_parent(registry, job_id)
    folder = job_dir(settings, job_id)
    manifest = steps.build_dataset(settings, parent["classes"], folder / "data", registry, job_id)
    logger.info("job %s: parent v%s, data %s", job_id, parent["version"], manifest["counts"])
    parent_weights = steps.champion_weights(settings, parent, folder / "parent.pt")
    result = run_with_deadline(
        steps.train_and_evaluate,
        (manifest["data_yaml"], parent_weights, folder / "train", settings),
        deadline - time.monotonic(),
    )
    metrics = {"candidate": result["candidate"], "current": result["current"]}
    decision = steps.decide(settings, registry, metrics, parent["version"], job_id)
    if time.monotonic() > deadline:
        raise JobTimedOut(f"timed out after {settings.timeout_s:.0f} s (before promotion)")
    record = steps.package_candidate(
        settings, registry, result["weights"], parent_version=parent["version"],
        candidate_metrics=result["candidate"], trained_on=manifest["trained_on"],
        decision=decision, job_id=job_id,
    )
    if decision.promote:
        steps.deploy(settings, registry, record["version"], parent_version=parent["version"],
                     decision_reason=decision.reason, job_id=job_id)
    return registry.get_job(job_id)
