"""What each component of the retrain pipeline runs (``yoloserve.retrain.pipeline``), kfp-free.

A component's body only imports this module and calls one ``run_*``: it rebuilds the settings,
calls one step function of ``yoloserve.retrain.steps`` under a deadline, and moves the results in
and out of the KFP artifacts it was handed (anything with ``.path`` and ``.metadata``). Kept apart
from the pipeline's definition so that the component's subprocess does not import the KFP
compiler while KFP's executor is still importing itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yoloserve.modelserver.registry import Registry, utcnow
from yoloserve.retrain import steps
from yoloserve.retrain.deadline import run_with_deadline
from yoloserve.retrain.gate import GateDecision
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store

PROMOTE = "promote"
REJECT = "reject"


def load_settings(overrides: dict[str, Any]) -> RetrainSettings:
    """The pod's ``RETRAIN_*`` settings with the run's ``settings`` parameter on top."""
    return RetrainSettings(**overrides)


def _timed(settings: RetrainSettings, step: Callable[..., Any], args: tuple[Any, ...],
           timeout_s: float | None = None) -> Any:
    """``step(*args)`` in a spawned child under the step's deadline.

    Spawned (``run_with_deadline``): ``step`` is a module-level function and ``args`` pickle, so
    a step that needs the registry gets the settings and builds its own in the child
    (``_registry``, by the ``_in_child_*`` functions below).
    """
    return run_with_deadline(step, args, timeout_s or settings.pipeline_step_timeout_s)


def weights_of(model: Any) -> Path:
    """The ``.pt`` inside a weights ``Model`` artifact (a folder: Ultralytics wants the suffix)."""
    return Path(model.path) / "weights.pt"


def _registry(settings: RetrainSettings) -> Registry:
    return Registry(open_store(settings.store.url))


def _in_child_serving_parent(settings: RetrainSettings, job_id: str) -> dict[str, Any]:
    return steps.serving_parent(_registry(settings), job_id)


def _in_child_build_dataset(settings: RetrainSettings, classes: list[str], out_dir: Path,
                            job_id: str) -> dict[str, Any]:
    return steps.build_dataset(settings, classes, out_dir, _registry(settings), job_id)


def _in_child_decide(settings: RetrainSettings, metrics: dict[str, Any], parent_version: str,
                     job_id: str) -> GateDecision:
    return steps.decide(settings, _registry(settings), metrics, parent_version, job_id)


def _in_child_package(settings: RetrainSettings, weights: Path, parent_version: str,
                      candidate_metrics: dict[str, Any], trained_on: dict[str, Any],
                      decision: GateDecision, job_id: str, data_yaml: Path) -> dict[str, Any]:
    # The job's dataset: an INT8 parent's candidate is calibrated on its training images and
    # gated on its held-out split, as in the one-process job.
    return steps.package_candidate(
        settings, _registry(settings), weights, parent_version=parent_version,
        candidate_metrics=candidate_metrics, trained_on=trained_on, decision=decision,
        job_id=job_id, data_yaml=data_yaml)


def _in_child_deploy(settings: RetrainSettings, version: str, parent_version: str,
                     decision_reason: str, job_id: str) -> str:
    return steps.deploy(settings, _registry(settings), version, parent_version=parent_version,
                        decision_reason=decision_reason, job_id=job_id)


def _data_yaml(manifest_dir: str, scratch: Path) -> Path:
    """The manifest's data.yaml, pointed at where the artifact lies now (it may have moved)."""
    text = (Path(manifest_dir) / "data.yaml").read_text().splitlines()
    text[0] = f"path: {Path(manifest_dir).resolve()}"
    out = scratch / "data.yaml"
    out.write_text("\n".join(text) + "\n")
    return out


def run_champion(overrides: dict[str, Any], job_id: str, champion: Any) -> str:
    """Mark the job running (or record one), resolve the serving version, extract its weights."""
    settings = load_settings(overrides)
    registry = _registry(settings)
    if job_id:
        registry.update_job(job_id, state="running", started_at=utcnow())
    else:
        job_id = registry.record_job(state="running", created_at=utcnow(), started_at=utcnow(),
                                     trigger="kfp").job_id
    parent = _timed(settings, _in_child_serving_parent, (settings, job_id))
    _timed(settings, steps.champion_weights, (settings, parent, weights_of(champion)))
    champion.metadata.update({"version": parent["version"], "sha256": parent["sha256"],
                              "classes": parent["classes"], "job_id": job_id})
    return job_id


def run_dataset(overrides: dict[str, Any], job_id: str, champion: Any, manifest: Any) -> None:
    settings = load_settings(overrides)
    built = _timed(settings, _in_child_build_dataset,
                   (settings, list(champion.metadata["classes"]), Path(manifest.path), job_id))
    manifest.metadata.update({"counts": built["counts"], "trained_on": built["trained_on"]})


def run_fine_tune(overrides: dict[str, Any], manifest: Any, champion: Any, candidate: Any) -> None:
    settings = load_settings(overrides)
    with tempfile.TemporaryDirectory(prefix="fine-tune-") as scratch:
        data_yaml = _data_yaml(manifest.path, Path(scratch))
        weights = _timed(settings, steps.fine_tune,
                         (settings, data_yaml, weights_of(champion), Path(scratch) / "train"),
                         timeout_s=settings.timeout_s)
        weights_of(candidate).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, weights_of(candidate))
    candidate.metadata.update({"parent": champion.metadata["version"], "epochs": settings.epochs})


def run_evaluate(overrides: dict[str, Any], manifest: Any, champion: Any, candidate: Any,
                 metrics: Any) -> None:
    settings = load_settings(overrides)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as scratch:
        data_yaml = _data_yaml(manifest.path, Path(scratch))
        result = _timed(settings, steps.evaluate,
                        (settings, data_yaml, weights_of(candidate), weights_of(champion)))
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(result, indent=2))
    for who, values in result.items():
        for key, value in values.items():
            if isinstance(value, int | float):
                metrics.log_metric(f"{who}_{key}", float(value))


def run_gate(overrides: dict[str, Any], job_id: str, champion: Any, metrics: Any,
             verdict: Any) -> str:
    """The gate's decision (``promote``/``reject``); its reason goes into ``verdict``."""
    settings = load_settings(overrides)
    result = json.loads(Path(metrics.path).read_text())
    decision: GateDecision = _timed(settings, _in_child_decide,
                                    (settings, result, champion.metadata["version"], job_id))
    answer = PROMOTE if decision.promote else REJECT
    Path(verdict.path).parent.mkdir(parents=True, exist_ok=True)
    Path(verdict.path).write_text(json.dumps({"decision": answer, "reason": decision.reason}))
    verdict.metadata.update({"decision": answer, "reason": decision.reason})
    return answer


def _reason(verdict: Any) -> str:
    return str(json.loads(Path(verdict.path).read_text())["reason"])


def run_package(overrides: dict[str, Any], job_id: str, decision: str, verdict: Any,
                champion: Any, manifest: Any, candidate: Any, metrics: Any, mar: Any) -> str:
    settings = load_settings(overrides)
    result = json.loads(Path(metrics.path).read_text())
    with tempfile.TemporaryDirectory(prefix="package-") as scratch:
        record = _timed(settings, _in_child_package, (
            settings, weights_of(candidate), champion.metadata["version"], result["candidate"],
            dict(manifest.metadata["trained_on"]),
            GateDecision(decision == PROMOTE, _reason(verdict)), job_id,
            _data_yaml(manifest.path, Path(scratch)),
        ))
    Path(mar.path).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.store_dir / record["mar"], Path(mar.path) / Path(record["mar"]).name)
    mar.metadata.update({k: record[k] for k in ("version", "status", "parent", "sha256")})
    return str(record["version"])


def run_deploy(overrides: dict[str, Any], job_id: str, version: str, verdict: Any,
               champion: Any) -> str:
    settings = load_settings(overrides)
    result: str = _timed(settings, _in_child_deploy, (
        settings, version, champion.metadata["version"], _reason(verdict), job_id))
    return result
