"""Where things live: the shared package's one settings class (``YOLOSERVE_*``) and the paths
derived from it.

Every default is derived from the package location, so the project runs from any clone without
machine-specific paths. ``YOLOSERVE_ROOT``, ``YOLOSERVE_MODELS_DIR``, ``YOLOSERVE_DATA_DIR`` and
``YOLOSERVE_RUN_DIR`` move them (the test and benchmark stacks run whole platforms in temporary
folders this way). They are read once, when this module is first imported, because the services'
own settings (``GATEWAY_*``, ``RETRAIN_*``, ``REPORTING_*``) take their defaults from these paths;
a process that wants other folders sets the variables before it starts, as every launcher does.

Example:
    >>> PathSettings(root=Path("/srv/yolo")).models_dir
    PosixPath('/srv/yolo/models')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO = Path(__file__).resolve().parent.parent


class PathSettings(BaseSettings):
    """The shared package's folders. Environment variables are ``YOLOSERVE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="YOLOSERVE_", extra="ignore")

    root: Path = _REPO
    models_dir: Path = Field(description="default: <root>/models")
    data_dir: Path = Field(description="default: <root>/data")
    run_dir: Path = Field(description="default: <root>/.run")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        # Folders left unset follow ``root``.
        if isinstance(data, dict):
            root = Path(data.get("root") or _REPO)
            for key, sub in (("models_dir", "models"), ("data_dir", "data"), ("run_dir", ".run")):
                data.setdefault(key, root / sub)
        return data


_settings = PathSettings()

ROOT: Path = _settings.root
MODELS_DIR: Path = _settings.models_dir
DATA_DIR: Path = _settings.data_dir
RUN_DIR: Path = _settings.run_dir

DEFAULT_WEIGHTS = MODELS_DIR / "default" / "best.pt"
DEFAULT_METRICS = MODELS_DIR / "default" / "metrics.json"
STORE_DIR = MODELS_DIR / "store"
REGISTRY_FILE = MODELS_DIR / "registry.json"
EMBEDDER_DIR = MODELS_DIR / "embedder"
SERVING_DIR = ROOT / "serving"
SAMPLES_DIR = DATA_DIR / "samples"
