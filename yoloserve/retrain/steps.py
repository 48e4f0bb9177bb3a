"""The retrain job's steps, one function each: the local job and the KFP pipeline both run these.

``yoloserve.retrain.job.run_job`` calls them in sequence in one process (fine-tune and evaluate
together in one spawned child under the job's deadline); ``yoloserve.retrain.pipeline`` wraps
each in a ``@dsl.component`` of its own. Inputs and outputs are plain and serialisable (paths as
strings, dicts of numbers), so that a step's result can cross a process or a pod as a KFP
artifact::

    serving_parent   registry              -> {"version", "mar", "sha256", "classes"} (parent)
    champion_weights parent                -> the serving version's weights (.pt)
    build_dataset    reference + feedback  -> manifest {"data_yaml", "counts", "trained_on"}
    fine_tune        manifest + weights    -> the candidate's weights (last epoch)
    evaluate         manifest + both       -> {"candidate": {...}, "current": {...}} (same split)
    benchmark        reference test split  -> both on the fixed benchmark set (when it exists)
    decide           metrics               -> GateDecision (records the metrics)
    package_candidate candidate            -> the version record (rejected: finishes the job)
    deploy           version               -> the final reason (finishes the job succeeded)

Every step that knows the job (``job_id``) writes what it learnt into the job record itself, so
the record reads the same whichever engine ran the steps. A step that fails raises
``RetrainFailed`` (or anything else): the caller records the job ``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from yoloserve import paths
from yoloserve.datasets import catalog
from yoloserve.datasets.collected import other_class_feedback
from yoloserve.modelserver.export import DEFAULT_RUNTIME, LEGACY_RUNTIMES, is_int8
from yoloserve.modelserver.packaging import (
    METRIC_KEYS,
    AccuracySet,
    PackagingError,
    extract_weights,
    package,
)
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.modelserver.rollout.base import (
    Deployer,
    DeployResult,
    DeploySettings,
    SwapOptions,
    run_sync,
)
from yoloserve.modelserver.rollout.factory import deployer_from_settings
from yoloserve.retrain.deadline import RetrainFailed
from yoloserve.retrain.gate import GateDecision, gate
from yoloserve.retrain.progress import ProgressReporter, chain_callbacks
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.tracking import manifest as manifests
from yoloserve.tracking.callbacks import epoch_callbacks
from yoloserve.tracking.runs import RunTracker
from yoloserve.tracking.settings import TrackingSettings
from yoloserve.training import train as training
from yoloserve.training.dataset import dataset_names, generate_dataset
from yoloserve.training.retrain_data import RetrainData, build_retrain_dataset

logger = logging.getLogger("yoloserve.retrain")


def finish(registry: Registry, job_id: str, state: str, reason: str, **extra: Any) -> RetrainJob:
    """Record the job's final state with its reason and end time."""
    return registry.update_job(job_id, state=state, reason=reason, finished_at=utcnow(), **extra)


def serving_parent(registry: Registry, job_id: str | None = None) -> dict[str, Any]:
    """The default version the candidate is tuned from (recorded as the job's ``parent``).

    Raises:
        RetrainFailed: the registry has no default version.
    """
    data = registry.load(jobs=False)
    if data.default_version is None:
        raise RetrainFailed("the registry has no default version to fine-tune from")
    parent = data.get(data.default_version)
    if job_id:
        registry.update_job(job_id, parent=parent.version)
    return {"version": parent.version, "mar": parent.mar, "sha256": parent.sha256,
            "classes": list(data.classes)}


def champion_weights(settings: RetrainSettings, parent: Mapping[str, Any], out: Path) -> str:
    """Extract the serving version's weights from its ``.mar`` (checked against its sha256)."""
    try:
        return str(extract_weights(settings.store_dir / parent["mar"], parent["sha256"], out))
    except PackagingError as exc:
        raise RetrainFailed(f"the serving version's weights: {exc}") from exc


def reference_dir(settings: RetrainSettings) -> Path:
    """The reference dataset a retrain mixes in: ``RETRAIN_REF_DIR`` when set, else the one the
    store names (``make import-dataset``), else the synthetic set (written when missing)."""
    if settings.ref_dir is not None:
        return settings.ref_dir
    imported = catalog.reference_dir(settings.store)
    return imported if imported is not None else paths.DATA_DIR / "shapes"


def _ensure_reference(ref_dir: Path, classes: list[str]) -> None:
    if (ref_dir / "images" / "train").is_dir():
        names = dataset_names(ref_dir)
        if names is not None and names != list(classes):
            # Label files hold indices: another class list would teach the model wrong names.
            raise RetrainFailed(
                f"the reference dataset {ref_dir} has the classes {names}, the model "
                f"{list(classes)}: import a reference of the model's classes "
                "(make import-dataset) or set RETRAIN_REF_DIR"
            )
        return
    if ref_dir.resolve().parent == (paths.DATA_DIR / catalog.DATASETS_FOLDER).resolve():
        raise RetrainFailed(f"the reference dataset {ref_dir} is gone: import it again")
    # The same dataset `python -m scripts.train dataset` writes (same counts, same seed).
    logger.info("reference dataset missing: generating it in %s", ref_dir)
    generate_dataset(ref_dir)


def build_dataset(
    settings: RetrainSettings, classes: list[str], out_dir: Path,
    registry: Registry | None = None, job_id: str | None = None,
) -> dict[str, Any]:
    """Reference sample + feedback, with the held-out eval slice; the manifest (counts recorded).

    Raises:
        RetrainFailed: no usable dataset.
    """
    ref_dir = reference_dir(settings)
    _ensure_reference(ref_dir, classes)
    stale: set[str] = set()
    if registry is not None:
        # Feedback from before a class change indexes the old names: it would teach wrong ones.
        versions = registry.load(jobs=False).version_classes
        stale = other_class_feedback(registry.store, versions, classes)
    try:
        dataset: RetrainData = build_retrain_dataset(
            out_dir, ref_dir, settings.feedback_dir, classes,
            ref_train_images=settings.ref_train_images, ref_eval_images=settings.ref_eval_images,
            holdout_pct=settings.holdout_pct, oversample_feedback=settings.oversample_feedback,
            seed=settings.seed, exclude=stale,
        )
    except ValueError as exc:
        raise RetrainFailed(f"no usable dataset: {exc}") from exc
    counts = {
        "ref_train": dataset.ref_train, "ref_eval": dataset.ref_eval,
        "feedback_train": dataset.feedback_train, "feedback_eval": dataset.feedback_eval,
    }
    if registry is not None and job_id:
        registry.update_job(job_id, data=counts)
    files = manifests.dataset_manifest(dataset.data_yaml, splits=("train", "test"))
    manifests.write_manifest(files, out_dir / "dataset_manifest.json")
    name = f"{job_id or out_dir.parent.name} held-out (reference val + feedback holdout)"
    return {
        "data_yaml": str(dataset.data_yaml),
        "counts": counts,
        "trained_on": {"ref_images": dataset.ref_train, "feedback_images": dataset.feedback_train,
                       "manifest_sha256": files["sha256"]},
        "manifest": str(out_dir / "dataset_manifest.json"),
        "eval_set": manifests.eval_set(name, files, "test"),
    }


def benchmark_set(settings: RetrainSettings, classes: list[str], out_dir: Path
                  ) -> dict[str, Any] | None:
    """The fixed benchmark set (reference test split) as ``{"data_yaml", "set"}``, if any."""
    if settings.benchmark_images <= 0:
        return None
    found = manifests.benchmark_dataset(reference_dir(settings), out_dir, settings.benchmark_images,
                                        classes)
    return None if found is None else {"data_yaml": str(found[0]), "set": found[1]}


def fine_tune(
    settings: RetrainSettings, data_yaml: str | Path, parent_weights: str | Path,
    out_dir: str | Path, tracker: RunTracker | None = None,
    progress: ProgressReporter | None = None,
) -> str:
    """Fine-tune from the serving weights; the last epoch's weights (not Ultralytics' best.pt).

    With an active ``tracker``, each epoch's losses and metrics go to its MLflow run; with a
    ``progress``, each epoch (and its ETA) goes to the job's record and log.
    """
    callbacks = chain_callbacks(
        epoch_callbacks(tracker) if tracker is not None and tracker.active else None,
        progress.ultralytics_callbacks() if progress is not None else None,
    )
    best = training.train(
        Path(data_yaml), Path(out_dir), weights=Path(parent_weights), epochs=settings.epochs,
        imgsz=settings.imgsz, batch=settings.batch, seed=settings.seed, lr0=settings.lr0,
        optimizer=settings.optimizer, warmup_epochs=settings.warmup_epochs, name="candidate",
        callbacks=callbacks or None,
    )
    # The last epoch, not Ultralytics' best.pt: best.pt is picked on the eval split, and a
    # candidate chosen on the data that judges it would get an unfair edge at the gate.
    last = best.with_name("last.pt")
    return str(last if last.is_file() else best)


def evaluate(
    settings: RetrainSettings, data_yaml: str | Path, candidate_weights: str | Path,
    champion: str | Path, plots_dir: Path | None = None, eval_set: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Candidate and champion (current) on the same held-out split.

    Args:
        plots_dir: keep each side's PR curve and confusion matrix in ``plots_dir/<side>``.
        eval_set: the split's name (``{"name", "images", "manifest_sha256"}``), recorded in both.
    """
    out: dict[str, dict[str, Any]] = {}
    for side, weights in (("candidate", candidate_weights), ("current", champion)):
        metrics = training.evaluate(
            Path(weights), Path(data_yaml), split="test", imgsz=settings.imgsz,
            batch=settings.batch, plots_dir=plots_dir / side if plots_dir else None,
        ).to_dict()
        out[side] = {**metrics, "eval_set": eval_set} if eval_set else metrics
    return out


def benchmark(
    settings: RetrainSettings, bench: Mapping[str, Any], sides: Mapping[str, str | Path]
) -> dict[str, dict[str, Any]]:
    """Each of ``sides`` (name -> weights) on the fixed benchmark set: the version's
    ``benchmark`` record (``{"set", "map50", "map50_95", "precision", "recall"}``)."""
    out = {}
    for side, weights in sides.items():
        m = training.evaluate(Path(weights), Path(bench["data_yaml"]), split="test",
                              imgsz=settings.imgsz, batch=settings.batch)
        out[side] = {"set": dict(bench["set"]), **{k: getattr(m, k) for k in METRIC_KEYS}}
    return out


def train_and_evaluate(
    data_yaml: Path, parent_weights: Path, out_dir: Path, settings: RetrainSettings,
    tracking: Mapping[str, Any] | None = None, job_id: str | None = None,
) -> dict[str, Any]:
    """``fine_tune``, ``evaluate`` then ``benchmark``, as the local job runs them (one spawned
    child: ``run_with_deadline`` finds this function by name, so it stays module-level).

    Args:
        tracking: ``{"run_id", "eval_set", "benchmark", "champion_benchmark"}``: the job's
            MLflow run (per-epoch metrics, plots), the eval split's name, the benchmark set
            (``benchmark_set``), and whether the champion still needs its benchmark score.
        job_id: the job whose progress (training epochs, then evaluating) is recorded.
    """
    tracking = tracking or {}
    tracker = RunTracker.resume(TrackingSettings(), settings.run_dir, tracking.get("run_id"))
    # Its own Registry: this runs in the spawned child, and the lock is taken per write.
    progress = ProgressReporter.for_job(settings.store.url, job_id)
    progress.phase("training")
    weights = fine_tune(settings, data_yaml, parent_weights, out_dir, tracker, progress)
    progress.phase("evaluating")
    plots = Path(out_dir) / "plots" if tracker.active else None
    result = {"weights": weights, **evaluate(settings, data_yaml, weights, parent_weights,
                                             plots, tracking.get("eval_set"))}
    if plots is not None:
        result["plots"] = str(plots)
    bench = tracking.get("benchmark")
    if bench:
        sides: dict[str, str | Path] = {"candidate": weights}
        if tracking.get("champion_benchmark"):
            sides["current"] = parent_weights
        result["benchmark"] = benchmark(settings, bench, sides)
    return result


def decide(
    settings: RetrainSettings, registry: Registry, metrics: Mapping[str, Any],
    parent_version: str, job_id: str | None = None,
) -> GateDecision:
    """The gate on the metrics (recorded in the job), refusing if the default moved meanwhile."""
    if job_id:
        registry.update_job(job_id, metrics=dict(metrics))
    decision = gate(metrics["candidate"], metrics["current"], settings.tolerance)
    now = registry.head().default_version
    if decision.promote and now != parent_version:
        decision = GateDecision(False, f"the default changed from v{parent_version} to v{now} "
                                       "while the job ran; not promoting over it")
    return decision


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    out["eval_images"] = metrics.get("images", 0)
    if metrics.get("eval_set"):
        out["eval_set"] = dict(metrics["eval_set"])
    return out


def split_of(data_yaml: str | Path, split: str) -> list[Path]:
    """The image files of one split of a data.yaml, each once, in order."""
    spec = yaml.safe_load(Path(data_yaml).read_text()) or {}
    root = Path(spec.get("path") or Path(data_yaml).parent)
    return list(dict.fromkeys(manifests.split_images(root, spec.get(split))))


def spread(images: Sequence[Path], n: int) -> list[Path]:
    """``n`` of ``images`` evenly spread over the list (reference and feedback alike)."""
    if len(images) <= n:
        return list(images)
    return [images[i * len(images) // n] for i in range(n)]


def package_candidate(
    settings: RetrainSettings, registry: Registry, weights: str | Path, *, parent_version: str,
    candidate_metrics: Mapping[str, Any], trained_on: Mapping[str, Any], decision: GateDecision,
    job_id: str | None = None, benchmark: Mapping[str, Any] | None = None,
    tracker: RunTracker | None = None, data_yaml: str | Path | None = None,
    bench: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Package the candidate as the next version; a rejected one is marked so (job: rejected).

    Args:
        benchmark: its scores on the fixed benchmark set (``ModelVersion.benchmark``).
        tracker: the job's MLflow run, recorded in the version (``mlflow_run_id``).
        data_yaml: the job's dataset: an INT8 runtime is calibrated on its training images.
        bench: the fixed benchmark set (``benchmark_set``): the export's mAP is measured on it
            (``ModelVersion.accuracy``), the gate of an INT8 runtime (without it, an INT8
            candidate is gated on the job's held-out split).

    Returns the version's record (``ModelVersion`` as a JSON dict).

    Raises:
        AccuracyError: an INT8 candidate lost more mAP to quantization than its gate allows.
    """
    parent_runtime = registry.get(parent_version).runtime
    # A parent served as the .pt (records of earlier releases) has no runtime today: its
    # candidate gets the default export.
    inherited = DEFAULT_RUNTIME if parent_runtime in LEGACY_RUNTIMES else parent_runtime
    runtime = settings.runtime or inherited
    calibration = None
    if is_int8(runtime) and data_yaml is not None:
        calibration = spread(split_of(data_yaml, "train"), settings.calibration_images)
    accuracy_set = None
    if bench:
        images = split_of(bench["data_yaml"], "test")
        accuracy_set = AccuracySet(tuple(images), dict(bench["set"])) if images else None
    if accuracy_set is None and calibration and data_yaml is not None:
        # No benchmark set (RETRAIN_BENCHMARK_IMAGES=0, or a reference set without a test
        # split): an INT8 candidate is gated on the job's held-out split instead.
        held_out = split_of(data_yaml, "test")
        accuracy_set = AccuracySet(tuple(held_out), {"name": f"{job_id} held-out",
                                                     "images": len(held_out)})
    record = package(
        Path(weights), registry, parent=parent_version, metrics=_headline(candidate_metrics),
        runtime=runtime,
        store_dir=settings.store_dir, trained_on=dict(trained_on), make_default=False,
        reuse=False, benchmark=dict(benchmark or {}),
        mlflow_run_id=tracker.run_id if tracker else None,
        mlflow_experiment_id=tracker.experiment_id if tracker else None,
        calibration=calibration, accuracy_set=accuracy_set,
    )
    if not decision.promote:
        record = registry.set_status(record.version, "rejected")
        logger.info("job %s: rejected v%s: %s", job_id, record.version, decision.reason)
        if job_id:
            finish(registry, job_id, "rejected", decision.reason,
                   candidate_version=record.version)
    elif job_id:
        registry.update_job(job_id, candidate_version=record.version)
    return record.model_dump(mode="json")


def deploy(
    settings: RetrainSettings, registry: Registry, version: str, *, parent_version: str,
    decision_reason: str, job_id: str | None = None,
) -> str:
    """Roll out the promoted candidate (``DEPLOY_BACKEND``; not when ``RETRAIN_DEPLOY=false``).

    Returns the job's final reason (and finishes the job ``succeeded``).

    Raises:
        RetrainFailed: the rollout failed or did not promote; ``parent_version`` keeps serving.
    """
    if not settings.deploy:
        reason = (f"{decision_reason}; packaged as v{version}, not deployed "
                  "(RETRAIN_DEPLOY=false)")
    else:
        try:
            result = rollout(settings, registry, version)
        except Exception as exc:
            raise RetrainFailed(
                f"{decision_reason}; packaged as v{version}, but the hot swap failed "
                f"({type(exc).__name__}: {exc}); v{parent_version} keeps serving"
            ) from exc
        if not result.promoted:
            raise RetrainFailed(
                f"{decision_reason}; packaged as v{version}, not promoted: {result.reason}"
            )
        logger.info("job %s: v%s serves now (%s)", job_id, version, result.reason)
        reason = f"{decision_reason}; v{version} serves"
    if job_id:
        finish(registry, job_id, "succeeded", reason)
    return reason


def deployer_for(settings: RetrainSettings, registry: Registry) -> Deployer:
    """The deployer ``DEPLOY_BACKEND`` names, with this job's (or controller's) swap options."""
    swap = SwapOptions(
        management_url=settings.torchserve.management_url,
        inference_url=settings.torchserve.inference_url,
        model_name=settings.torchserve.model_name, drain_s=settings.drain_s,
        worker_timeout_s=settings.worker_timeout_s,
    )
    return deployer_from_settings(DeploySettings(), registry, swap)


def rollout(settings: RetrainSettings, registry: Registry, version: str) -> DeployResult:
    """Roll the promoted candidate out with the deployer ``DEPLOY_BACKEND`` names."""
    return run_sync(deployer_for(settings, registry).deploy(version))
