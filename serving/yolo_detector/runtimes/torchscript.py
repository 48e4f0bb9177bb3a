"""TorchScript: the traced model on libtorch, no Python model code and no Ultralytics.

The one runtime of the worker that needs torch for itself (TorchServe's worker imports torch
anyway, so it costs no extra package); slower than ONNX Runtime on the CPUs measured
(docs/benchmarks.md), kept for teams whose tooling expects a PyTorch artefact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo_detector.runtimes.base import ExportInfo, Runtime, RuntimeOptions


class TorchScriptRuntime(Runtime):
    """A ``.torchscript`` file (``torch.jit`` trace with Ultralytics' metadata as an extra file)."""

    family = "torchscript"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        super().__init__(path, options)
        torch.set_num_threads(options.threads)
        self.device = torch.device(options.device)
        extra = {"config.txt": ""}
        self.model = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
        self.model.eval()
        metadata = json.loads(extra["config.txt"]) if extra["config.txt"] else {}
        self.info = ExportInfo.from_metadata(metadata, path)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device))
        out = out[0] if isinstance(out, list | tuple) else out
        return out.cpu().numpy()

    def settings(self) -> dict[str, Any]:
        return {"torch": torch.__version__, "threads": torch.get_num_threads()}
