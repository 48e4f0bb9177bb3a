"""Run the packed handler in this process, over a folder laid out like an unpacked ``.mar``.

TorchServe's worker imports ``serving/handler.py`` and calls it with a ``ts.context.Context``; this
does the same without a server, so that packaging can check the parity of exactly what will serve
(the handler with its runtime settings, not Ultralytics' own loader) before anything is registered.

Example:
    >>> handler = LocalHandler(Path("stage/model"))  # doctest: +SKIP
    >>> handler.predict(Path("photo.jpg").read_bytes(), conf=0.1)["boxes"][0]  # doctest: +SKIP
    {'xyxy': [10.5, 20.0, 60.25, 80.0], 'conf': 0.91, 'cls': 2, 'name': 'triangle'}
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from yoloserve.modelserver import MODEL_NAME
from yoloserve.offline import configure_offline
from yoloserve.paths import SERVING_DIR

HANDLER_MODULE = "handler"  # the name TorchServe's worker imports it under
CONFIG_NAME = "model-config.yaml"


def handler_module(path: Path = SERVING_DIR / "handler.py") -> ModuleType:
    """The handler module, imported once from its file under the worker's module name."""
    loaded = sys.modules.get(HANDLER_MODULE)
    if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
        return loaded
    # TorchServe puts the unpacked archive's folder on the worker's path, so the handler imports
    # its package (yolo_detector) from beside it: the same here.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(HANDLER_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the handler from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[HANDLER_MODULE] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class LocalHandler:
    """One ``YoloHandler`` over ``model_dir``, as a TorchServe worker would load it.

    Args:
        model_dir: the serialized weights, the export and ``model-config.yaml``.
        serialized_file: the weights' file name (the manifest's ``serializedFile``).
        version: what the handler reports as the model version.
    """

    def __init__(self, model_dir: Path, serialized_file: str, version: str = "0") -> None:
        configure_offline()
        from ts.context import Context
        from ts.metrics.metrics_store import MetricsStore
        from ts.utils.util import get_yaml_config

        manifest = {
            "model": {
                "modelName": MODEL_NAME, "modelVersion": version, "serializedFile": serialized_file
            }
        }
        config = get_yaml_config(str(model_dir / CONFIG_NAME))
        self._context = Context(
            MODEL_NAME, str(model_dir), manifest, 4, None, "0.12.0",
            metrics=MetricsStore(uuid.uuid4(), MODEL_NAME), model_yaml_config=config,
        )
        self.handler: Any = handler_module().YoloHandler()
        self.handler.initialize(self._context)

    def predict(self, image: bytes, **params: float | int) -> dict[str, Any]:
        """The handler's answer for one request (``conf``, ``iou``, ``max_det`` as parts)."""
        request: dict[str, Any] = {"data": image, **{k: str(v).encode() for k, v in params.items()}}
        return dict(self.handler.handle([request], self._context)[0])
