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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from yoloserve.errors import RegistryError
from yoloserve.modelserver import MODEL_NAME
from yoloserve.offline import configure_offline

Runtime = Literal["onnx", "openvino", "torchscript"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
RecordedRuntime = Literal["onnx", "openvino", "torchscript", "torch"]
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


def export_model(
    weights: Path, runtime: str, workdir: Path, *, imgsz: int, dynamic: bool = True
) -> Export:
    """Export ``weights`` for ``runtime`` into ``workdir`` (a fresh folder the caller owns).

    Args:
        weights: Ultralytics ``.pt`` weights.
        runtime: one of :data:`RUNTIMES`.
        workdir: where the export is written (Ultralytics writes beside the weights, so they are
            copied there first and the model folder stays clean).
        imgsz: the serving size; a dynamic export runs at any size, this is the trace shape.
        dynamic: dynamic input shapes. ``False`` only to show what a static export breaks.

    Returns:
        The export.

    Raises:
        ExportError: unknown runtime, or the exporter failed.
    """
    checked = check_runtime(runtime)
    configure_offline()
    from ultralytics import YOLO

    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{MODEL_NAME}.pt"
    shutil.copyfile(weights, source)
    options: dict[str, object] = {"simplify": True} if checked == "onnx" else {}
    try:
        out = YOLO(str(source)).export(
            format=checked, imgsz=imgsz, dynamic=dynamic, device="cpu", verbose=False, **options
        )
    except Exception as exc:  # the exporter raises whatever its backend raises
        raise ExportError(f"exporting {weights} to {checked} failed: {exc}") from exc
    finally:
        source.unlink(missing_ok=True)
    return Export(runtime=checked, path=Path(out), dynamic=dynamic)
