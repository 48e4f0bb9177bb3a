"""OpenVINO (CPU, Intel GPU).

Compiled once with the export's dynamic shapes, so a lone image runs at its minimum rectangle
without a recompile, and with ``INFERENCE_PRECISION_HINT=f32``: left to itself OpenVINO infers in
bf16 wherever the CPU has AMX or AVX512-BF16, which moves confidences by ~0.01 and breaks parity
with the ``.pt`` (an int8 export keeps its quantized layers in int8 either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import yaml

from yolo_detector.runtimes.base import ExportInfo, Runtime, RuntimeOptions


class OpenVinoRuntime(Runtime):
    """An OpenVINO IR folder (``*.xml`` + ``*.bin`` + ``metadata.yaml``)."""

    family = "openvino"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        super().__init__(path, options)
        xml = path if path.is_file() else next(path.glob("*.xml"))
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": options.threads,
        }
        target = "GPU" if options.device.startswith("cuda") else "CPU"  # an Intel GPU, for OpenVINO
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(xml)), target, config)
        self.request = self.compiled.create_infer_request()
        sidecar = xml.parent / "metadata.yaml"
        metadata = yaml.safe_load(sidecar.read_text()) if sidecar.is_file() else {}
        self.info = ExportInfo.from_metadata(metadata or {}, path)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        # The request reuses its output buffer: copy before the next batch overwrites it.
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def settings(self) -> dict[str, Any]:
        return {
            "openvino": ov.get_version(),
            "precision": str(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
        }
