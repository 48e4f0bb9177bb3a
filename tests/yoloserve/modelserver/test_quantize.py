"""INT8 behind an accuracy gate: real quantization of the shipped model, real archiver and handler.

The images are the first of the reference dataset's splits (same seeds as
``generate_dataset``): 100 training images to calibrate on, and the first 40 of the benchmark
set (the test split) to score on, fewer than ``make package``'s 150 to keep the suite short.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from yoloserve.modelserver.export import FLOAT_RUNTIMES, RUNTIMES, ExportError, export_model
from yoloserve.modelserver.packaging import (
    AccuracyError,
    AccuracySet,
    PackagingError,
    package,
)
from yoloserve.modelserver.quantize import letterboxed
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store
from yoloserve.training.dataset import write_split

FILES = {"onnx-int8": "yolo_int8.onnx", "openvino-int8": "yolo_int8_openvino_model/yolo.xml"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], AccuracySet]:
    """Calibration images and the benchmark subset, with their labels."""
    root = tmp_path_factory.mktemp("shapes")
    write_split(root, "train", 100, seed=0)  # generate_dataset's seeds: train 0, test 2
    write_split(root, "test", 40, seed=2)
    train = sorted((root / "images" / "train").glob("*.jpg"))
    test = sorted((root / "images" / "test").glob("*.jpg"))
    return train, AccuracySet(tuple(test), {"name": "shapes-test[:40]", "images": len(test)})


@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A broken calibration: black images, so every activation range is measured as ~0."""
    root = tmp_path_factory.mktemp("blank")
    paths = []
    for i in range(8):
        path = root / f"blank_{i}.jpg"
        Image.new("RGB", (320, 320)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Store.sqlite(tmp_path / "models" / "yoloserve.db"))


@pytest.mark.parametrize("runtime", ["onnx-int8", "openvino-int8"])
def test_the_int8_gate_passes_on_the_shipped_model(
    runtime: str, registry: Registry, tmp_path: Path, default_weights: Path,
    shapes: tuple[list[Path], AccuracySet],
) -> None:
    train, bench = shapes
    store = tmp_path / "store"
    record = package(default_weights, registry, store_dir=store, runtime=runtime,
                     calibration=train, accuracy_set=bench)
    assert record.runtime == runtime and record.parity == {}
    accuracy = record.accuracy
    assert accuracy["passed"] is True and accuracy["images"] == 40
    assert accuracy["set"]["name"] == "shapes-test[:40]"
    assert all(abs(d) <= 0.01 for d in accuracy["deltas"].values())
    assert accuracy["reference"]["map50"] > 0.9  # the gate compares a model that works
    with zipfile.ZipFile(store / record.mar) as archive:
        names = set(archive.namelist())
        config = yaml.safe_load(archive.read("model-config.yaml"))
    assert FILES[runtime] in names and default_weights.name in names
    assert config["export"] == {"runtime": runtime, "file": FILES[runtime].split("/")[0],
                                "dynamic": True}
    assert [v.version for v in registry.load().versions] == [record.version]


@pytest.mark.parametrize("runtime", ["onnx-int8", "openvino-int8"])
def test_a_broken_calibration_is_refused_with_its_figures_and_registers_nothing(
    runtime: str, registry: Registry, tmp_path: Path, default_weights: Path,
    shapes: tuple[list[Path], AccuracySet], blank: list[Path],
) -> None:
    store = tmp_path / "store"
    with pytest.raises(AccuracyError) as caught:
        package(default_weights, registry, store_dir=store, runtime=runtime,
                calibration=blank, accuracy_set=shapes[1])
    report = caught.value.report
    assert not report.passed and report.deltas["map50"] < -0.01
    message = str(caught.value)
    assert "loses accuracy" in message and f"{report.candidate.map50:.4f}" in message
    assert registry.load().versions == []
    assert not list(store.glob("*.mar")) and not list(store.glob(".stage-*"))


def test_a_float_runtime_given_the_set_records_its_map_too(
    registry: Registry, tmp_path: Path, default_weights: Path,
    shapes: tuple[list[Path], AccuracySet],
) -> None:
    record = package(default_weights, registry, store_dir=tmp_path / "store", runtime="onnx",
                     accuracy_set=shapes[1])
    assert record.parity["passed"] is True
    assert record.accuracy["passed"] is True
    assert abs(record.accuracy["deltas"]["map50_95"]) < 0.002  # float: nearly the .pt itself


def test_int8_without_calibration_is_refused_before_any_work(
    registry: Registry, tmp_path: Path, default_weights: Path,
    shapes: tuple[list[Path], AccuracySet],
) -> None:
    with pytest.raises(PackagingError, match="calibration"):
        package(default_weights, registry, store_dir=tmp_path, runtime="onnx-int8",
                accuracy_set=shapes[1])
    with pytest.raises(PackagingError, match="accuracy set"):
        package(default_weights, registry, store_dir=tmp_path, runtime="onnx-int8",
                calibration=shapes[0])
    with pytest.raises(ExportError, match="calibration"):
        export_model(default_weights, "openvino-int8", tmp_path / "x", imgsz=320)
    assert registry.load().versions == []


def test_calibration_images_are_letterboxed_as_the_handler_does(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (640, 480), (255, 0, 0)).save(path)
    x = letterboxed(path, 320)
    # 640x480 -> 320x240, padded to the stride: 256 rows, RGB order, in [0, 1]
    assert x.shape == (1, 3, 256, 320) and x.dtype == np.float32
    assert x[0, 0, 128, 160] > 0.9 and x[0, 2, 128, 160] < 0.1
    assert x[0, :, 0, 0] == pytest.approx([114 / 255] * 3)  # the letterbox's grey


def test_auto_times_every_gated_runtime_here_and_keeps_the_fastest(
    registry: Registry, tmp_path: Path, default_weights: Path,
    shapes: tuple[list[Path], AccuracySet],
) -> None:
    train, bench = shapes
    store = tmp_path / "store"
    record = package(default_weights, registry, store_dir=store, runtime="auto",
                     calibration=train, accuracy_set=bench)
    selection = record.selection
    assert set(selection["p50_ms"]) == set(RUNTIMES) and selection["refused"] == {}
    fastest = min(selection["p50_ms"], key=selection["p50_ms"].get)
    assert record.runtime == selection["chosen"] == fastest
    assert selection["machine"]["cpu_model"] and selection["machine"]["cpu_count"] >= 1
    gate = "accuracy" if record.runtime.endswith("-int8") else "parity"
    assert getattr(record, gate)["passed"] is True
    with zipfile.ZipFile(store / record.mar) as archive:
        config = yaml.safe_load(archive.read("model-config.yaml"))
    assert config["export"]["runtime"] == record.runtime
    # The same weights again: the version auto chose is reused, nothing is timed twice.
    assert package(default_weights, registry, store_dir=store, runtime="auto",
                   calibration=train, accuracy_set=bench) == record
    assert len(registry.load().versions) == 1


def test_auto_without_calibration_leaves_int8_out_and_says_why(
    registry: Registry, tmp_path: Path, default_weights: Path,
) -> None:
    record = package(default_weights, registry, store_dir=tmp_path / "store", runtime="auto")
    assert set(record.selection["p50_ms"]) == set(FLOAT_RUNTIMES)
    assert set(record.selection["refused"]) == {"onnx-int8", "openvino-int8"}
    assert all("calibration" in why for why in record.selection["refused"].values())
    assert record.runtime in FLOAT_RUNTIMES and record.parity["passed"] is True
