"""How retrain jobs run (``RETRAIN_*``) and where a job keeps its lock, folder and log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths
from yoloserve.modelserver.export import Runtime
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.store.settings import StoreSettings

LOCK_NAME = "retrain.lock"
JOBS_DIR = "retrain"


class RetrainSettings(BaseSettings):
    """How retrain jobs run. Environment variables are ``RETRAIN_<FIELD>``.

    ``launcher`` says where a started job runs; the library default is ``process`` (a detached
    process beside its starter, for one host). ``make demo`` and docker compose use ``queue``:
    the gateway only records the job, and the trainer service (``python -m yoloserve.retrain
    trainer``, the only one with the training stack) claims it. A queued job then runs with the
    trainer's ``RETRAIN_*`` (epochs, tolerance...) and ``TORCHSERVE_*``, not its starter's, so
    both get the same.
    """

    model_config = SettingsConfigDict(env_prefix="RETRAIN_", extra="ignore")

    every_k: int = Field(default=50, ge=1, description="Feedback rows between automatic jobs")
    epochs: int = Field(default=8, ge=1, description="Fine-tuning epochs")
    imgsz: int = Field(default=320, ge=32)
    batch: int = Field(default=16, ge=1)
    # Gentle on purpose: Ultralytics' defaults (AdamW via optimizer=auto, 3 warmup epochs with
    # bias lr 0.1) took a 0.983-mAP50 model to 0.949 (mAP50-95 0.66) in 2 epochs on 60 images;
    # SGD at lr0 0.002 without warmup kept it at 0.982 (mAP50-95 0.87). Measured on this CPU.
    optimizer: str = Field(default="SGD", description="Ultralytics optimizer ('auto' ignores lr0)")
    lr0: float | None = Field(default=0.002, gt=0, description="None: Ultralytics' default")
    warmup_epochs: float | None = Field(default=0.0, ge=0, description="None: Ultralytics' 3")
    seed: int = 0
    tolerance: float = Field(
        default=0.01, ge=-1, le=1,
        description="Promote if cand. mAP50 >= current - tolerance (<0: must beat it)",
    )
    holdout_pct: int = Field(default=25, ge=1, le=99, description="Feedback % kept for eval")
    ref_train_images: int = Field(default=200, ge=0, description="Reference images mixed in")
    ref_eval_images: int = Field(default=50, ge=0, description="Reference images judged on")
    benchmark_images: int = Field(
        default=150, ge=0,
        description="Reference test images every version is also scored on (0: none)",
    )
    calibration_images: int = Field(
        default=200, ge=1,
        description="Training images an INT8 candidate is calibrated on (onnx-int8, "
        "openvino-int8)",
    )
    oversample_feedback: int = Field(default=2, ge=1, description="Copies of each feedback image")
    timeout_s: float = Field(default=1800.0, gt=0, description="Whole job; then failed")
    torchserve: TorchServeSettings = Field(
        default_factory=TorchServeSettings,
        description="The TorchServe a promoted candidate is swapped into (TORCHSERVE_*)",
    )
    deploy: bool = Field(default=True, description="Hot-swap a promoted candidate")
    runtime: Runtime | None = Field(
        default=None,
        description="What serves the candidate (onnx, openvino, torchscript, torch, onnx-int8, "
        "openvino-int8); unset: the "
        "runtime of the version it was tuned from, so a retrain never changes how serving runs",
    )
    drain_s: float = Field(default=2.0, ge=0)
    worker_timeout_s: float = Field(default=180.0, gt=0)
    lock_wait_s: float = Field(default=60.0, ge=0, description="Child waits this for the lock")
    ref_dir: Path | None = Field(
        default=None,
        description="Reference dataset mixed into every retrain; unset: the store's reference "
        "(the dataset imported with make import-dataset), else data/shapes (generated if missing)",
    )
    feedback_dir: Path = paths.DATA_DIR / "feedback"
    store: StoreSettings = Field(
        default_factory=StoreSettings,
        description="The store jobs and versions are recorded in (STORE_DATABASE_URL)",
    )
    store_dir: Path = paths.STORE_DIR
    run_dir: Path = Field(default=paths.RUN_DIR, description="Lock, job folders and logs")
    launcher: Literal["process", "queue", "kubernetes", "pipeline"] = Field(
        default="process",
        description="process: a detached local process; queue: the trainer service claims it; "
        "kubernetes: a Job; pipeline: a KFP run",
    )
    trainer_poll_s: float = Field(
        default=2.0, gt=0, description="Trainer: seconds between looks for a queued job"
    )
    trainer_heartbeat_s: float = Field(
        default=5.0, gt=0, description="Trainer: seconds between heartbeats (run_dir/trainers)"
    )
    trainer_stale_heartbeats: int = Field(
        default=3, ge=2, description="Heartbeats missed before a trainer counts as gone"
    )
    k8s_namespace: str | None = Field(default=None, description="None: the pod's namespace")
    k8s_job_template: str = Field(
        default="yoloserve-trainer-job", description="ConfigMap whose job.yaml is the Job"
    )
    k8s_image: str | None = Field(default=None, description="Trainer image; None: the template's")
    kfp_host: str | None = Field(default=None, description="KFP API; None: the in-cluster one")
    kfp_namespace: str | None = Field(default=None, description="KFP (multi-user) namespace")
    kfp_experiment: str = Field(default="yoloserve-retrain", description="KFP experiment of runs")
    pipeline_image: str = Field(
        default="yoloserve/trainer:0.1.0", description="Base image of the pipeline's components"
    )
    pipeline_gpu: bool = Field(default=False, description="The fine-tune step asks for a GPU")
    pipeline_retries: int = Field(default=1, ge=0, description="Retries of each pipeline step")
    pipeline_volumes: dict[str, str] = Field(
        default={"yoloserve-models": "/models", "yoloserve-data": "/data"},
        description="PVC name -> mount path in every pipeline step (where the registry, the "
        "store, the reference set and the feedback live, as in the gateway's pod)",
    )
    pipeline_step_timeout_s: float = Field(
        default=600.0, gt=0, description="Each pipeline step but fine-tuning (timeout_s)"
    )

    def child_environment(self, store_url: str | None = None) -> dict[str, str]:
        """This process's environment plus every setting, for the job process.

        A field goes as ``RETRAIN_<FIELD>``; a nested settings class goes by its own variables,
        the ones every other service reads too: ``store`` as ``STORE_*``, ``torchserve`` as
        ``TORCHSERVE_*``. ``store_url`` (``settings.store`` when None) becomes
        ``STORE_DATABASE_URL``, so whatever the child opens is the store its job is recorded in.
        """
        env = dict(os.environ)
        nested = self.nested_settings()
        nested["store"] = self.store.model_copy(
            update={"database_url": store_url or self.store.url}
        )
        for name, value in self.model_dump(exclude=set(nested)).items():
            _export(env, f"RETRAIN_{name.upper()}", value)
        for name, part in nested.items():
            # RETRAIN_<NAME> (JSON) would win over the variables below in the child.
            env.pop(f"RETRAIN_{name.upper()}", None)
            prefix = part.model_config.get("env_prefix", "")
            for field, value in part.model_dump().items():
                _export(env, f"{prefix}{field.upper()}", value)
        env.setdefault("YOLO_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def nested_settings(self) -> dict[str, BaseSettings]:
        """The nested settings classes (``store``, ``torchserve``) by field name."""
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), BaseSettings)
        }


def _export(env: dict[str, str], key: str, value: object) -> None:
    """``value`` as pydantic-settings reads it back from ``key``; None: the variable unset."""
    if value is None:
        env.pop(key, None)
    elif isinstance(value, dict | list):
        env[key] = json.dumps(value)  # how pydantic-settings reads complex fields
    else:
        env[key] = str(value).lower() if isinstance(value, bool) else str(value)


def lock_path(settings: RetrainSettings) -> Path:
    """The file whose lock is held while a job process lives."""
    return settings.run_dir / LOCK_NAME


def job_dir(settings: RetrainSettings, job_id: str) -> Path:
    """The job's working folder (dataset lists, training run, weights)."""
    return settings.run_dir / JOBS_DIR / job_id


def job_log(settings: RetrainSettings, job_id: str) -> Path:
    """The job process's log."""
    return settings.run_dir / JOBS_DIR / f"{job_id}.log"


