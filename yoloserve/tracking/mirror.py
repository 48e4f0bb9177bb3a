"""The registry mirrored in MLflow: registered model ``yolo``, version N = registry version N.

``sync`` is idempotent and repairs whatever an outage left behind: it gives every registry
version without a run one (``register_run``: the shipped model's recorded training, read from
``models/default/metrics.json``, or a bare registration), creates the MLflow versions the server
lacks in order (MLflow numbers them itself, so creating them in registry order keeps N = N),
refreshes each version's tags (weights sha256, runtime, status, parent, run id, eval set,
benchmark, gate result) and points the alias ``champion`` at the registry's default.

It runs after every registry change in the trainer and the CLIs (``sync_quietly``: never raises),
and ``make mlflow-sync`` runs it by hand.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from yoloserve import paths
from yoloserve.modelserver.packaging import sha256_file
from yoloserve.modelserver.registry import ModelVersion, Registry, RegistryData
from yoloserve.tracking import status
from yoloserve.tracking.manifest import BENCHMARK_NAME
from yoloserve.tracking.runs import RunTracker, client
from yoloserve.tracking.settings import TrackingSettings

logger = logging.getLogger("yoloserve.tracking")

RUNTIME = "torchserve-0.12.0 (serving/handler.py)"
SYNC_LOCK_TIMEOUT_S = 120.0


@dataclass
class SyncReport:
    """What one sync did."""

    created: list[str] = field(default_factory=list)
    runs_logged: list[str] = field(default_factory=list)
    runs_closed: list[str] = field(default_factory=list)
    champion: str | None = None
    mismatched: list[str] = field(default_factory=list)


def _shipped_metrics(record: ModelVersion) -> dict[str, Any] | None:
    """``models/default/metrics.json`` when ``record`` holds the shipped weights."""
    try:
        if sha256_file(paths.DEFAULT_WEIGHTS) != record.sha256:
            return None
        return dict(json.loads(paths.DEFAULT_METRICS.read_text()))
    except (OSError, ValueError):
        return None


def register_run(settings: TrackingSettings, run_dir: Path, record: ModelVersion
                 ) -> RunTracker:
    """A run for a version that was not trained under tracking (the shipped model, a redeploy).

    For the shipped weights it logs their recorded training: recipe, epochs, image size, the
    test-split metrics, ``best.pt`` and ``metrics.json``.
    """
    shipped = _shipped_metrics(record)
    name = f"v{record.version} shipped training" if shipped else f"v{record.version} registered"
    tracker = RunTracker.start(settings, run_dir, name=name, tags={
        "yoloserve.kind": "shipped" if shipped else "registered",
        "yoloserve.version": record.version})
    tracker.params(version=record.version, weights_sha256=record.sha256, parent=record.parent)
    if shipped:
        tracker.params(**{k: shipped.get(k) for k in
                          ("epochs", "imgsz", "batch", "split", "train_seconds", "recipe")},
                       source=str(paths.DEFAULT_WEIGHTS))
        tracker.metrics({k: v for k, v in shipped.items() if k not in ("speed_ms",)})
        tracker.artifact(paths.DEFAULT_WEIGHTS, "weights")
        tracker.artifact(paths.DEFAULT_METRICS)
    else:
        tracker.metrics(record.metrics)
    tracker.end()
    return tracker


def shipped_benchmark(record: ModelVersion, benchmark_set: dict[str, Any] | None
                      ) -> dict[str, Any]:
    """The shipped model's benchmark scores, when its recorded test run is the benchmark set."""
    shipped = _shipped_metrics(record)
    if not (shipped and benchmark_set and shipped.get("split") == "test"
            and shipped.get("images") == benchmark_set["images"]):
        return {}
    return {"set": benchmark_set, **{k: shipped[k] for k in
                                     ("map50", "map50_95", "precision", "recall") if k in shipped}}


def _tags(record: ModelVersion, data: RegistryData) -> dict[str, str]:
    tags = {"weights_sha256": record.sha256, "runtime": RUNTIME, "status": record.status,
            "parent": record.parent or "", "run_id": record.mlflow_run_id or "",
            "mar": record.mar}
    if "eval_set" in record.metrics:
        tags["eval_set"] = json.dumps(record.metrics["eval_set"], sort_keys=True)
    if "map50" in record.metrics:
        tags["map50"] = f"{record.metrics['map50']:.4f}"
    if record.benchmark:
        tags["benchmark"] = json.dumps(record.benchmark.get("set", {}), sort_keys=True)
        tags["benchmark_map50"] = f"{record.benchmark.get('map50', float('nan')):.4f}"
    job = next((j for j in data.jobs if j.candidate_version == record.version), None)
    if job is not None:
        gate = "rejected" if record.status == "rejected" else "promoted"
        tags.update(gate=gate, gate_reason=(job.reason or "")[:4000], job_id=job.job_id)
    return tags


def sync(registry: Registry, settings: TrackingSettings | None = None,
         run_dir: Path | None = None) -> SyncReport:
    """Make MLflow's registered model agree with the registry (raises on MLflow errors)."""
    settings = settings or TrackingSettings()
    run_dir = run_dir or paths.RUN_DIR
    if not settings.enabled:
        return SyncReport()
    # Two syncs at once (the trainer's and a CLI's) would both create the missing versions.
    lock = status.status_path(run_dir).with_name("sync.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock), timeout=SYNC_LOCK_TIMEOUT_S):
        return _sync(registry, settings, run_dir)


def _sync(registry: Registry, settings: TrackingSettings, run_dir: Path) -> SyncReport:
    report = SyncReport()
    mlflow_client = client(settings)
    from mlflow.exceptions import MlflowException

    name = settings.registered_model
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(
            name, description="Mirror of models/registry.json (the source of truth for serving)")
    found = {int(mv.version): mv for mv in mlflow_client.search_model_versions(f"name='{name}'")}
    existing = set(found)
    data = registry.load()  # with the jobs: a version is tagged with its job's gate result
    for record in sorted(data.versions, key=lambda v: int(v.version)):
        if record.mlflow_run_id is None:
            shipped = _shipped_metrics(record) or {}
            if shipped.get("mlflow_run_id"):  # trained by scripts.train under tracking
                tracker = RunTracker(settings, run_dir, mlflow_client, shipped["mlflow_run_id"],
                                     shipped.get("mlflow_experiment_id"))
            else:
                tracker = register_run(settings, run_dir, record)
            if tracker.run_id is None:
                raise RuntimeError(f"could not log a run for v{record.version}")
            record = _remember_run(registry, record.version, tracker)
            report.runs_logged.append(record.version)
        if int(record.version) not in existing:
            if existing and max(existing) > int(record.version):
                report.mismatched.append(record.version)
                continue
            run = mlflow_client.get_run(record.mlflow_run_id)
            created = mlflow_client.create_model_version(
                name, source=f"{run.info.artifact_uri}/weights", run_id=record.mlflow_run_id,
                tags=_tags(record, data),
                description=f"registry version {record.version} ({record.mar})")
            existing.add(int(created.version))
            if str(created.version) != record.version:
                report.mismatched.append(record.version)
            report.created.append(record.version)
        else:
            have = found[int(record.version)].tags or {}
            for key, value in _tags(record, data).items():
                if have.get(key) != value:
                    mlflow_client.set_model_version_tag(name, record.version, key, value)
        _close_run(mlflow_client, record, data, report)
    if data.default_version and data.default_version not in report.mismatched:
        mlflow_client.set_registered_model_alias(name, settings.champion_alias,
                                                 data.default_version)
        report.champion = data.default_version
    if report.mismatched:
        logger.warning("MLflow versions %s do not line up with the registry's (another "
                       "registry mirrored into the same server?)", report.mismatched)
    return report


def _close_run(mlflow_client: Any, record: ModelVersion, data: RegistryData,
               report: SyncReport) -> None:
    # A job whose MLflow went down before it could end its run left it RUNNING for ever.
    job = next((j for j in data.jobs if j.candidate_version == record.version), None)
    if job is None or job.state in ("queued", "running") or record.mlflow_run_id is None:
        return
    if mlflow_client.get_run(record.mlflow_run_id).info.status != "RUNNING":
        return
    state = "FINISHED" if job.state in ("succeeded", "rejected") else "FAILED"
    mlflow_client.set_terminated(record.mlflow_run_id, state)
    report.runs_closed.append(record.version)


def _remember_run(registry: Registry, version: str, tracker: RunTracker) -> ModelVersion:
    with registry.update() as data:
        record = data.get(version)
        record.mlflow_run_id = tracker.run_id
        record.mlflow_experiment_id = tracker.experiment_id
        if not record.benchmark:
            record.benchmark = shipped_benchmark(record, _reference_benchmark_set())
        if record.benchmark and "eval_set" not in record.metrics:
            record.metrics["eval_set"] = dict(record.benchmark["set"])  # its test split
        return record


def _reference_benchmark_set() -> dict[str, Any] | None:
    # The benchmark set's name needs the reference test split on disk (scripts.train dataset).
    from yoloserve.tracking.manifest import entries_for, manifest_sha256, split_images

    test = split_images(paths.DATA_DIR / "shapes", "images/test")
    if not test:
        return None
    entries = entries_for(test, "test")
    return {"name": BENCHMARK_NAME, "images": len(entries),
            "manifest_sha256": manifest_sha256(entries)}


def sync_quietly(registry: Registry, settings: TrackingSettings | None = None,
                 run_dir: Path | None = None) -> SyncReport | None:
    """``sync``, but an outage is logged and counted (``status``), never raised."""
    settings = settings or TrackingSettings()
    run_dir = run_dir or paths.RUN_DIR
    if not settings.enabled:
        return None
    try:
        report = sync(registry, settings, run_dir)
    except Exception as exc:
        logger.warning("MLflow sync failed (%s: %s); the next sync repairs it",
                       type(exc).__name__, exc)
        try:
            status.record_failure(run_dir, "sync", exc)
        except Exception:
            logger.exception("could not record the MLflow failure")
        return None
    status.record_sync(run_dir)
    return report
