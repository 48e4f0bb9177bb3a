"""Export Ultralytics weights to the runtime a model version is served with.

A runtime is chosen at package time (``make package RUNTIME=onnx``): the handler runs the export,
and the ``.pt`` stays in the ``.mar`` for retraining and provenance. Exports
are made by Ultralytics' own exporter with **dynamic shapes**, so the handler can letterbox a lone
image to the minimum stride rectangle exactly as ``predict`` does for the ``.pt``; a static
export letterboxes to a square and moves boxes (``yoloserve.modelserver.parity`` refuses it).

| runtime | file in the ``.mar`` | runs on |
|---|---|---|
| ``onnx`` | ``yolo.onnx`` | ONNX Runtime (CPU; CUDA / TensorRT execution providers on a GPU) |
| ``openvino`` | ``yolo_openvino_model/`` | OpenVINO (CPU, Intel GPU) |
| ``torchscript`` | ``yolo.torchscript`` | libtorch, no Python model code |
| ``onnx-int8`` | ``yolo_int8.onnx`` | ONNX Runtime, INT8 (``yoloserve.modelserver.quantize``) |
| ``openvino-int8`` | ``yolo_int8_openvino_model/`` | OpenVINO, INT8 through NNCF |

The INT8 runtimes are calibrated on ``calibration`` images (the version's own training images)
and gated on accuracy rather than parity (``yoloserve.modelserver.accuracy``). The handler runs
them with the runtime named before ``-int8``.

The ``.pt`` itself is no runtime: running it needs Ultralytics and torchvision, which the serving
worker does without (docs/benchmarks.md, lean serving). Versions registered with ``torch``
runtime before that stay readable in the registry (:data:`LEGACY_RUNTIMES`); serving them means
repackaging their weights.

Example:
    >>> export_model(Path("best.pt"), "onnx", Path("/tmp/x"), imgsz=320).path.name  # doctest: +SKIP
    'yolo.onnx'
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from yoloserve.errors import RegistryError
from yoloserve.modelserver import MODEL_NAME
from yoloserve.offline import configure_offline

Runtime = Literal["onnx", "openvino", "torchscript", "onnx-int8", "openvino-int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
INT8_RUNTIMES: tuple[str, ...] = ("onnx-int8", "openvino-int8")
FLOAT_RUNTIMES: tuple[str, ...] = tuple(r for r in RUNTIMES if r not in INT8_RUNTIMES)
AUTO_RUNTIME = "auto"
"""Not a runtime: the packager's choice of the fastest runtime that passes its gate here
(``yoloserve.modelserver.selection``)."""
"""The runtimes whose answers equal the ``.pt``'s (gated on parity)."""
RecordedRuntime = Literal["onnx", "openvino", "torchscript", "onnx-int8", "openvino-int8", "torch"]
"""What a registry record may name: today's runtimes and ``torch`` (the ``.pt``, served by the
Ultralytics-based worker of earlier releases)."""
LEGACY_RUNTIMES: tuple[str, ...] = ("torch",)
# Measured here (2-core CPU, imgsz 320, docs/benchmarks.md): ONNX Runtime 0.52x PyTorch's forward
# time, OpenVINO 0.80x; both keep parity with dynamic shapes. The packager checks parity anyway.
DEFAULT_RUNTIME: Runtime = "onnx"


class ExportError(RegistryError):
    """The exporter failed, or the runtime is unknown."""

    code = "export_failed"


@dataclass(frozen=True)
class Export:
    """An exported model, ready to be packed into a ``.mar``.

    Attributes:
        runtime: what runs it.
        path: what the handler's runtime loads (a file, or OpenVINO's folder).
        dynamic: exported with dynamic input shapes (batch, height, width).
    """

    runtime: Runtime
    path: Path
    dynamic: bool


def check_runtime(runtime: str) -> Runtime:
    """``runtime`` if it is one of :data:`RUNTIMES`.

    Raises:
        ExportError: any other name.
    """
    if runtime in LEGACY_RUNTIMES:
        raise ExportError(
            f"the {runtime!r} runtime (serving the .pt through Ultralytics) is gone: the serving "
            f"worker runs exports only; choose one of {', '.join(RUNTIMES)}"
        )
    if runtime not in RUNTIMES:
        raise ExportError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime  # type: ignore[return-value]


def is_int8(runtime: str) -> bool:
    """Whether ``runtime`` is quantized (gated on accuracy, not on parity)."""
    return runtime in INT8_RUNTIMES


def export_model(
    weights: Path, runtime: str, workdir: Path, *, imgsz: int, dynamic: bool = True,
    calibration: Sequence[Path] | None = None,
) -> Export:
    """Export ``weights`` for ``runtime`` into ``workdir`` (a fresh folder the caller owns).

    Args:
        weights: Ultralytics ``.pt`` weights.
        runtime: one of :data:`RUNTIMES`.
        workdir: where the export is written (Ultralytics writes beside the weights, so they are
            copied there first and the model folder stays clean).
        imgsz: the serving size; a dynamic export runs at any size, this is the trace shape.
        dynamic: dynamic input shapes. ``False`` only to show what a static export breaks.
        calibration: images of the version's own training set; INT8 runtimes only (required).

    Returns:
        The export.

    Raises:
        ExportError: unknown runtime, no calibration for an INT8 one, or the exporter failed.
    """
    checked = check_runtime(runtime)
    if is_int8(checked):
        if not calibration:
            raise ExportError(f"the {checked} runtime needs calibration images (training images)")
        return _export_int8(Path(weights), checked, workdir, imgsz, dynamic, list(calibration))
    return Export(runtime=checked, path=_ultralytics_export(weights, checked, workdir, imgsz,
                                                            dynamic), dynamic=dynamic)


def _ultralytics_export(
    weights: Path, fmt: str, workdir: Path, imgsz: int, dynamic: bool
) -> Path:
    configure_offline()
    from ultralytics import YOLO

    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{MODEL_NAME}.pt"
    shutil.copyfile(weights, source)
    options: dict[str, object] = {"simplify": True} if fmt == "onnx" else {}
    try:
        out = YOLO(str(source)).export(
            format=fmt, imgsz=imgsz, dynamic=dynamic, device="cpu", verbose=False, **options
        )
    except Exception as exc:  # the exporter raises whatever its backend raises
        raise ExportError(f"exporting {weights} to {fmt} failed: {exc}") from exc
    finally:
        source.unlink(missing_ok=True)
    return Path(out)


def _export_int8(
    weights: Path, runtime: Runtime, workdir: Path, imgsz: int, dynamic: bool,
    calibration: list[Path],
) -> Export:
    from yoloserve.modelserver import quantize

    try:
        if runtime == "onnx-int8":
            source = _ultralytics_export(weights, "onnx", workdir / "float", imgsz, dynamic)
            path = quantize.quantize_onnx(
                source, workdir / quantize.ONNX_INT8_FILE, calibration, imgsz=imgsz
            )
            shutil.rmtree(workdir / "float", ignore_errors=True)
        else:
            path = quantize.export_openvino_int8(
                weights, workdir, calibration, imgsz=imgsz, dynamic=dynamic
            )
    except ExportError:
        raise
    except Exception as exc:  # ONNX Runtime and NNCF raise whatever their backends raise
        raise ExportError(f"quantizing {weights} for {runtime} failed: {exc}") from exc
    return Export(runtime=runtime, path=path, dynamic=dynamic)
