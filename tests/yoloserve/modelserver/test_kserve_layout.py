"""The KServe layout from a registry: the default's .mar (or every version not rejected) copied
byte for byte, and a config.properties whose model_snapshot KServe's wrapper can parse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from yoloserve import paths
from yoloserve.errors import RegistryError
from yoloserve.modelserver.kserve_layout import WORKER_SETTINGS, write_kserve_layout
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store

CLASSES = ["circle", "square", "triangle"]


def _registry(tmp_path: Path, n: int = 2) -> tuple[Registry, Path]:
    """A registry of ``n`` versions with fake archives; the last one is the default."""
    registry, store = Registry(Store.sqlite(tmp_path / "yoloserve.db")), tmp_path / "store"
    store.mkdir()
    for i in range(1, n + 1):
        (store / f"yolo_v{i}.mar").write_bytes(f"fake archive {i}".encode())
        registry.add_version(
            sha256=hashlib.sha256(str(i).encode()).hexdigest(),
            mar=f"yolo_v{i}.mar",
            classes=CLASSES,
            make_default=True,
        )
    return registry, store


def _properties(out: Path) -> dict[str, str]:
    # The way KServe's TorchServe wrapper reads it: each line split at its first "=".
    keys = {}
    for line in (out / "config" / "config.properties").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            keys[name.strip()] = value.strip()
    return keys


def test_default_version_only(tmp_path: Path) -> None:
    registry, store = _registry(tmp_path)
    out = write_kserve_layout(registry, store, tmp_path / "kserve" / "yolo")
    assert sorted(p.name for p in (out / "model-store").iterdir()) == ["yolo_v2.mar"]
    assert (out / "model-store" / "yolo_v2.mar").read_bytes() == b"fake archive 2"
    keys = _properties(out)
    assert keys["model_store"] == "/mnt/models/model-store"
    assert keys["enable_metrics_api"] == "true" and keys["metrics_format"] == "prometheus"
    # Inference on the ServingRuntime's container port, on every interface (the queue-proxy
    # forwards to it); management on the pod's loopback; metrics where Prometheus is told to look.
    assert keys["inference_address"] == "http://0.0.0.0:8080"
    assert keys["management_address"] == "http://127.0.0.1:8086"
    assert keys["metrics_address"] == "http://0.0.0.0:8082"
    snapshot = json.loads(keys["model_snapshot"])
    assert snapshot["modelCount"] == 1
    assert snapshot["models"] == {
        "yolo": {"2": {"defaultVersion": True, "marName": "yolo_v2.mar", **WORKER_SETTINGS}}
    }


def test_all_versions_skips_rejected_and_marks_one_default(tmp_path: Path) -> None:
    registry, store = _registry(tmp_path, n=3)
    registry.set_default("2")
    registry.set_status("3", "rejected")
    out = write_kserve_layout(registry, store, tmp_path / "out", all_versions=True)
    assert sorted(p.name for p in (out / "model-store").iterdir()) == [
        "yolo_v1.mar",
        "yolo_v2.mar",
    ]
    versions = json.loads(_properties(out)["model_snapshot"])["models"]["yolo"]
    assert {v: e["defaultVersion"] for v, e in versions.items()} == {"1": False, "2": True}


def test_rewrite_drops_archives_no_longer_listed(tmp_path: Path) -> None:
    registry, store = _registry(tmp_path)
    out = tmp_path / "out"
    write_kserve_layout(registry, store, out, all_versions=True)
    write_kserve_layout(registry, store, out)
    assert sorted(p.name for p in (out / "model-store").iterdir()) == ["yolo_v2.mar"]


@pytest.mark.parametrize(
    ("versions", "remove", "message"),
    [(0, None, "no default version"), (2, "yolo_v2.mar", "missing in the model store")],
)
def test_refuses_without_default_or_archive(
    tmp_path: Path, versions: int, remove: str | None, message: str
) -> None:
    registry, store = _registry(tmp_path, n=versions)
    if remove:
        (store / remove).unlink()
    with pytest.raises(RegistryError, match=message):
        write_kserve_layout(registry, store, tmp_path / "out")
    assert not (tmp_path / "out" / "config" / "config.properties").exists()


def test_worker_settings_match_the_packed_model_config() -> None:
    config = yaml.safe_load((paths.SERVING_DIR / "model-config.yaml").read_text())
    assert {key: config[key] for key in WORKER_SETTINGS} == WORKER_SETTINGS
