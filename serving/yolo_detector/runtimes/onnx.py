"""ONNX Runtime (CPU; CUDA / TensorRT execution providers on a GPU).

The session is built here rather than with ONNX Runtime's defaults: intra-op threads as decided,
one inter-op thread (a YOLO graph is a chain), full graph optimisation, and no spinning between
ops by default (on a small box the spinning threads burn the CPU the gateway and TorchServe's
frontend need: docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from yolo_detector.runtimes.base import ExportInfo, Runtime, RuntimeOptions


class OnnxRuntime(Runtime):
    """An ONNX export (float, or int8 with QDQ nodes) in an ``InferenceSession``."""

    family = "onnx"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        super().__init__(path, options)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spinning = "1" if options.onnx_spinning else "0"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        providers = list(options.onnx_providers) or (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if options.device.startswith("cuda") else ["CPUExecutionProvider"]
        )
        self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info = ExportInfo.from_metadata(metadata, path)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(self.output_names, {self.input_name: batch})[0])

    def settings(self) -> dict[str, Any]:
        options = self.session.get_session_options()
        return {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": options.intra_op_num_threads,
        }
