"""The interface every runtime of the worker implements, and the settings they share.

A runtime loads one Ultralytics export and runs batches through it: float32 NCHW in, the raw
detection head out, (N, 4 + classes, anchors). What the export knows of itself (class names,
stride, whether it is NMS-free) comes from the metadata Ultralytics' exporter writes into it, read
here without Ultralytics.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime runs: threads and device, set once at load time.

    Attributes:
        threads: intra-op threads (the handler decides it: one per core by default).
        device: ``cpu``, or ``cuda`` / ``cuda:1`` (ONNX Runtime's CUDA provider, TorchScript).
        onnx_providers: ONNX Runtime providers in order of preference; empty = CUDA on a GPU
            device, else CPU.
        onnx_spinning: let ONNX Runtime's intra-op threads spin between ops.
    """

    threads: int = 1
    device: str = "cpu"
    onnx_providers: list[str] = field(default_factory=list)
    onnx_spinning: bool = False


@dataclass(frozen=True)
class ExportInfo:
    """What an Ultralytics export says of itself.

    Attributes:
        names: class names by index.
        stride: the largest stride of the model (letterbox padding is a multiple of it).
        end2end: the head already applied NMS (YOLOv10 / YOLO26 style): rows of boxes out.
    """

    names: dict[int, str]
    stride: int
    end2end: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], source: Path) -> ExportInfo:
        """Parse Ultralytics' export metadata (values may be strings of Python literals).

        Raises:
            ValueError: the export carries no class names (not an Ultralytics export).
        """

        def literal(value: Any) -> Any:
            return ast.literal_eval(value) if isinstance(value, str) else value

        if "names" not in metadata:
            raise ValueError(f"{source} carries no Ultralytics metadata (class names)")
        names = {int(k): str(v) for k, v in literal(metadata["names"]).items()}
        stride = literal(metadata.get("stride", 32))
        stride = int(max(stride) if isinstance(stride, list | tuple) else stride)
        end2end = str(metadata.get("end2end", False)).lower() == "true"
        return cls(names=names, stride=stride, end2end=end2end)


class Runtime(ABC):
    """One loaded export.

    Args:
        path: the export (a file, or OpenVINO's folder).
        options: threads and device.
    """

    family: ClassVar[str]
    """The runtime's name without a precision suffix: ``onnx``, ``openvino``, ``torchscript``."""

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        self.path = path
        self.options = options
        self.info: ExportInfo = ExportInfo(names={}, stride=32)

    @abstractmethod
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The raw head for ``batch`` (float32 N x 3 x H x W): float32 N x (4 + classes) x A."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """What the runtime was actually built with (threads, providers, precision), for logs."""
