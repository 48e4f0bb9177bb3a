"""Where things live in the repository. Every path is derived from the package location, so the
project runs from any clone without machine-specific paths; each can be moved by an env variable."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("YOLOSERVE_ROOT", Path(__file__).resolve().parent.parent))
MODELS_DIR = Path(os.environ.get("YOLOSERVE_MODELS_DIR", ROOT / "models"))
DATA_DIR = Path(os.environ.get("YOLOSERVE_DATA_DIR", ROOT / "data"))
RUN_DIR = Path(os.environ.get("YOLOSERVE_RUN_DIR", ROOT / ".run"))

DEFAULT_WEIGHTS = MODELS_DIR / "default" / "best.pt"
DEFAULT_METRICS = MODELS_DIR / "default" / "metrics.json"
STORE_DIR = MODELS_DIR / "store"
REGISTRY_FILE = MODELS_DIR / "registry.json"
EMBEDDER_DIR = MODELS_DIR / "embedder"
SERVING_DIR = ROOT / "serving"
SAMPLES_DIR = DATA_DIR / "samples"
