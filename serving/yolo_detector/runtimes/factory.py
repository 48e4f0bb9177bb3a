"""The runtime of an export, by the name the packager wrote (``export: runtime:``).

A precision suffix (``onnx-int8``) runs on its family's runtime: an int8 export is a graph with
quantized nodes that the same library runs. Each runtime's module imports its library, and is
imported only when a version needs it: an image may leave out a runtime it never serves.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from yolo_detector.runtimes.base import Runtime, RuntimeOptions

MODULES = {
    "onnx": ("yolo_detector.runtimes.onnx", "OnnxRuntime"),
    "openvino": ("yolo_detector.runtimes.openvino", "OpenVinoRuntime"),
    "torchscript": ("yolo_detector.runtimes.torchscript", "TorchScriptRuntime"),
}


def family(runtime: str) -> str:
    """``onnx-int8`` -> ``onnx``."""
    return runtime.split("-", 1)[0]


def load_runtime(runtime: str, path: Path, options: RuntimeOptions) -> Runtime:
    """Load the export at ``path`` with the runtime named ``runtime``.

    Raises:
        ValueError: a runtime this worker does not serve (``torch``, the ``.pt`` itself, needs
            Ultralytics: repackage the version for ``onnx``).
        FileNotFoundError: the export is not there.
    """
    if family(runtime) not in MODULES:
        served = ", ".join(MODULES)
        raise ValueError(
            f"this worker serves {served} exports, not {runtime!r}; repackage the version "
            "(make package RUNTIME=onnx)"
        )
    if not path.exists():
        raise FileNotFoundError(f"the {runtime} export {path} is not in the .mar")
    module_name, class_name = MODULES[family(runtime)]
    runtime_class: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return runtime_class(path, options)
