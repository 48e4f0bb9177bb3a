"""Packaging with a runtime: export, parity check on the packed handler, archive, record.

Real exporter, real archiver, real handler: only TorchServe's server is absent.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from yoloserve.modelserver.export import ExportError
from yoloserve.modelserver.packaging import ParityError, extract_weights, package, sha256_file
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Store.sqlite(tmp_path / "models" / "yoloserve.db"))


def test_onnx_is_the_default_and_the_mar_holds_export_weights_and_its_yaml(
    registry: Registry, tmp_path: Path, default_weights: Path
) -> None:
    store = tmp_path / "models" / "store"
    record = package(default_weights, registry, store_dir=store)
    assert record.runtime == "onnx"
    assert record.parity["passed"] is True
    assert record.parity["max_box_px"] <= 0.5 and record.parity["max_conf"] <= 1e-3
    assert record.parity["images"] >= 6 and record.parity["boxes"] > 0
    with zipfile.ZipFile(store / record.mar) as archive:
        names = set(archive.namelist())
        config = yaml.safe_load(archive.read("model-config.yaml"))
    assert {"yolo.onnx", default_weights.name, "handler.py"} <= names
    assert config["export"] == {"runtime": "onnx", "file": "yolo.onnx", "dynamic": True}
    assert config["handler"]["imgsz"] == 320  # the shared YAML is kept, the section appended
    out = extract_weights(store / record.mar, record.sha256, tmp_path / "back.pt")
    assert sha256_file(out) == sha256_file(default_weights)
    assert not list(store.glob(".stage-*")), "the staging folder is removed"


def test_same_weights_reuse_their_version_per_runtime(
    registry: Registry, tmp_path: Path, default_weights: Path
) -> None:
    store = tmp_path / "store"
    first = package(default_weights, registry, store_dir=store, runtime="onnx")
    assert package(default_weights, registry, store_dir=store, runtime="onnx") == first
    assert first.parity["passed"] is True
    other = package(default_weights, registry, store_dir=store, runtime="torchscript")
    assert other.version != first.version and other.runtime == "torchscript"
    with zipfile.ZipFile(store / other.mar) as archive:
        assert "yolo.torchscript" in archive.namelist()


def test_openvino_keeps_its_model_folder_in_the_archive(
    registry: Registry, tmp_path: Path, default_weights: Path
) -> None:
    store = tmp_path / "store"
    record = package(default_weights, registry, store_dir=store, runtime="openvino")
    with zipfile.ZipFile(store / record.mar) as archive:
        names = set(archive.namelist())
    assert {"yolo_openvino_model/yolo.xml", "yolo_openvino_model/yolo.bin"} <= names
    assert record.parity["passed"] is True


def test_a_static_export_is_refused_and_nothing_is_registered(
    registry: Registry, tmp_path: Path, default_weights: Path
) -> None:
    store = tmp_path / "store"
    with pytest.raises(ParityError) as caught:
        package(default_weights, registry, store_dir=store, runtime="onnx", dynamic=False)
    message = str(caught.value)
    assert "breaks parity" in message and "another runtime" in message
    assert not caught.value.report.passed
    # A square letterbox moves boxes well past the limits on these photos.
    assert caught.value.report.max_box_px > 0.5 or caught.value.report.max_conf > 1e-3
    assert registry.load().versions == []
    assert not list(store.glob("*.mar")) and not list(store.glob(".stage-*"))


def test_an_unknown_runtime_is_refused_before_any_work(
    registry: Registry, tmp_path: Path, default_weights: Path
) -> None:
    with pytest.raises(ExportError, match="unknown runtime 'tensorflow'"):
        package(default_weights, registry, store_dir=tmp_path / "store", runtime="tensorflow")
    assert registry.load().versions == []
