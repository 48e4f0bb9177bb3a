"""``GET /models``: the registered versions, the default one, and the class names.

The registry file (``models/registry.json``, via ``yoloserve.registry``) is the source of truth;
this route only reads it, without a lock (registry writes are atomic replaces). A registry that
does not exist yet means "no versions".
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.deps import SettingsDep
from gateway.errors import error_responses
from yoloserve import registry
from yoloserve.errors import RegistryError
from yoloserve.schemas import ModelsResponse, ModelVersionInfo

router = APIRouter(tags=["models"])


def read_models(path: Path) -> ModelsResponse:
    """Read the registry file into the contract's ``GET /models`` answer.

    Args:
        path: The registry JSON file.

    Raises:
        RegistryError: The file exists but cannot be read as a registry.
    """
    try:
        data = registry.Registry(path).load()
    except (OSError, ValueError, ValidationError, registry.RegistryError) as exc:
        # ValidationError is a ValueError; named for the reader: a malformed file lands here.
        raise RegistryError(f"the registry {path.name} cannot be read: {exc}") from exc
    return ModelsResponse(
        name=data.name,
        default_version=data.default_version,
        classes=data.classes,
        versions=[ModelVersionInfo.model_validate(v.model_dump()) for v in data.versions],
    )


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses=error_responses(500),
    summary="Model versions, the default one, and class names",
)
async def list_models(settings: SettingsDep) -> ModelsResponse:
    """Every registered version with its status, lineage, metrics and training data."""
    return await run_in_threadpool(read_models, settings.registry_path)
