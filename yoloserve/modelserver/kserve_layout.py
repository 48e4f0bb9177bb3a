"""The model storage layout our KServe TorchServe runtime reads, written from our registry.

KServe mounts an InferenceService's ``storageUri`` (``pvc://yoloserve-models/kserve/yolo``: the
folder ``models/kserve/yolo`` on the models volume) at ``/mnt/models``, and our runtime starts
TorchServe with ``--ts-config /mnt/models/config/config.properties``; TorchServe loads the models
and versions that file's ``model_snapshot`` lists (``--ncs``: it writes no snapshot back)::

    <out_dir>/
      config/config.properties     model_snapshot, addresses, model_store=/mnt/models/model-store
      model-store/yolo_v3.mar      the registry's default version (defaultVersion in the snapshot)
      model-store/yolo_v2.mar      with all_versions: every version not rejected

The ``.mar`` files are copied from the store, never rebuilt: KServe serves exactly the bytes the
registry recorded. The runtime is our own ``yoloserve/serving`` image as the ServingRuntime
``yoloserve-torchserve`` (``deploy/kubernetes/overlays/prod/servingruntime.yaml``): plain
TorchServe, no KServe wrapper, so inference listens on ``0.0.0.0:8080``, the container port
Knative's queue-proxy forwards to, and the predictor URL answers ``/ping`` and
``/predictions/yolo`` as TorchServe does locally. Management stays on the pod's loopback (8086),
because on Kubernetes versions change by patching the InferenceService, never through
TorchServe's management API; metrics on 8082, where the runtime's ``prometheus.kserve.io``
annotations tell Prometheus to scrape.

Example:
    >>> from pathlib import Path
    >>> from yoloserve.modelserver.registry import Registry
    >>> write_kserve_layout(Registry(), Path("models/store"), Path("/tmp/kserve"))  # doctest: +SKIP
    PosixPath('/tmp/kserve')
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from yoloserve.errors import RegistryError
from yoloserve.files import atomic_write
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.registry import ModelVersion, Registry

MOUNT = "/mnt/models"
"""Where KServe's storage initializer puts the storageUri's content in the predictor pod."""

# Per-version frontend settings, the same as serving/model-config.yaml (a test holds them equal):
# the snapshot is what KServe's TorchServe registers each version with.
WORKER_SETTINGS: dict[str, int] = {
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 4,
    "maxBatchDelay": 1,
    "responseTimeout": 60,
}

# Keys besides the snapshot; the values follow serving/config.properties where KServe allows.
SERVER_PROPERTIES: dict[str, str] = {
    # The ServingRuntime's containerPort: Knative routes the predictor's traffic here.
    "inference_address": "http://0.0.0.0:8080",
    "management_address": "http://127.0.0.1:8086",
    "metrics_address": "http://0.0.0.0:8082",
    "grpc_inference_port": "7070",
    "grpc_management_port": "7071",
    "enable_metrics_api": "true",
    "metrics_format": "prometheus",
    "number_of_netty_threads": "4",
    "job_queue_size": "100",
    # The runtime image carries our dependencies; a per-model pip install needs the internet.
    "install_py_dep_per_model": "false",
    "default_startup_timeout": "180",
    "max_request_size": "16777216",
    "max_response_size": "6553500",
    "disable_token_authorization": "true",
    "model_store": f"{MOUNT}/model-store",
}


def model_snapshot(
    versions: list[ModelVersion], default: str, model_name: str = MODEL_NAME
) -> dict[str, Any]:
    """TorchServe's ``model_snapshot`` for ``versions`` of one model, ``default`` marked.

    ``modelCount`` counts versions, as TorchServe's own snapshots do.
    """
    entries = {
        record.version: {
            "defaultVersion": record.version == default,
            "marName": record.mar,
            **WORKER_SETTINGS,
        }
        for record in sorted(versions, key=lambda v: int(v.version))
    }
    return {
        "name": "startup.cfg",
        "modelCount": len(entries),
        "models": {model_name: entries},
    }


def config_properties(snapshot: dict[str, Any]) -> str:
    """The text of ``config/config.properties`` for ``snapshot``.

    The snapshot is one line of compact JSON, with no backslash a properties reader would
    unescape: TorchServe (and KServe's wrapper in its stock image) splits each line at its
    first ``=`` and parses the rest as JSON.
    """
    lines = ["# Written by yoloserve.modelserver.kserve_layout; regenerate, do not edit."]
    lines += [f"{key}={value}" for key, value in SERVER_PROPERTIES.items()]
    lines.append("model_snapshot=" + json.dumps(snapshot, separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n"


def write_kserve_layout(
    registry: Registry,
    store_dir: Path,
    out_dir: Path,
    model_name: str = MODEL_NAME,
    *,
    all_versions: bool = False,
) -> Path:
    """Write KServe's TorchServe layout for the registry's default version into ``out_dir``.

    Args:
        registry: the registry; its default version is served (``defaultVersion``).
        store_dir: the model store holding each version's ``.mar`` (``models/store``).
        out_dir: the layout's root (``models/kserve/yolo`` for the shipped storageUri); created.
        model_name: the name TorchServe serves the model under.
        all_versions: also copy and list every other version that is not ``rejected``, so a
            request pinned to an older version (``/predictions/yolo/2``) still finds it.

    Returns:
        ``out_dir``.

    Raises:
        RegistryError: the registry has no default version, or a ``.mar`` is missing.
    """
    data = registry.load(jobs=False)
    if data.default_version is None:
        raise RegistryError("the registry has no default version: package a model first")
    default = data.get(data.default_version)
    chosen = [default]
    if all_versions:
        chosen += [
            v for v in data.versions if v.version != default.version and v.status != "rejected"
        ]
    missing = [v.mar for v in chosen if not (store_dir / v.mar).is_file()]
    if missing:
        raise RegistryError(f"missing in the model store {store_dir}: {', '.join(missing)}")

    model_store = out_dir / "model-store"
    config_dir = out_dir / "config"
    model_store.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    wanted = {v.mar for v in chosen}
    for record in chosen:
        target = model_store / record.mar
        partial = target.with_name(f".{record.mar}.partial")
        # Copy then rename: a pod starting meanwhile sees the old archive or the whole new one.
        shutil.copyfile(store_dir / record.mar, partial)
        partial.replace(target)
    for stale in model_store.glob("*.mar"):
        if stale.name not in wanted:
            stale.unlink()
    text = config_properties(model_snapshot(chosen, default.version, model_name))
    # Last: the config names only archives that are already in place.
    atomic_write(config_dir / "config.properties", text.encode(), sync_dir=True)
    return out_dir
