"""``GET /models`` (versions, the default one, class names) and ``POST /models/{v}/activate``.

The registry (versions in the store, via ``yoloserve.modelserver.registry``) is the source of
truth; ``GET /models`` reads one snapshot of it. An empty store means "no versions". Activation is
an intent: the gateway checks the version can serve, records an ``activate`` job and answers 202;
the acting controller (``yoloserve.controller.rollouts``) swaps it in (TorchServe's management API
or KServe) and records the outcome, which ``GET /jobs/{job_id}`` reports.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from gateway.deps import RegistryDep, SettingsDep, require_admin_key
from gateway.errors import error_responses
from gateway.prediction import VERSION_PATTERN
from yoloserve.errors import RegistryError
from yoloserve.modelserver import registry
from yoloserve.schemas import ModelsResponse, ModelVersionInfo, RetrainJobStatus
from yoloserve.tracking.settings import run_url

router = APIRouter(tags=["models"])


def read_models(source: registry.Registry, mlflow_ui_url: str | None = None) -> ModelsResponse:
    """Read the registry into the contract's ``GET /models`` answer.

    Args:
        source: The registry.
        mlflow_ui_url: The MLflow UI, to link each version's run (``None``: no links).

    Raises:
        RegistryError: The store cannot be read as a registry.
    """
    try:
        data = source.load(jobs=False)
    except (OSError, ValueError, ValidationError, SQLAlchemyError) as exc:
        # ValidationError is a ValueError; named for the reader: a malformed record lands here.
        raise RegistryError(f"the registry cannot be read: {exc}") from exc
    return ModelsResponse(
        name=data.name,
        default_version=data.default_version,
        classes=data.classes,
        versions=[_info(v, mlflow_ui_url) for v in data.versions],
    )


def _info(record: registry.ModelVersion, mlflow_ui_url: str | None) -> ModelVersionInfo:
    info = ModelVersionInfo.model_validate(record.model_dump())
    info.mlflow_run_url = run_url(mlflow_ui_url, record.mlflow_experiment_id,
                                  record.mlflow_run_id)
    return info


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses=error_responses(500),
    summary="Model versions, the default one, and class names",
)
async def list_models(settings: SettingsDep, source: RegistryDep) -> ModelsResponse:
    """Every registered version with its status, lineage, metrics and training data."""
    return await run_in_threadpool(read_models, source, settings.mlflow_ui_url)


@router.post(
    "/models/{version}/activate",
    status_code=202,
    response_model=RetrainJobStatus,
    responses=error_responses(400, 401, 403, 404, 409, 500),
    dependencies=[Depends(require_admin_key)],
    summary="Ask for a registered version to become the default (rollback), without downtime",
)
async def activate_version(
    version: Annotated[str, PathParam(pattern=VERSION_PATTERN, description="e.g. 2")],
    source: RegistryDep,
) -> RetrainJobStatus:
    """202 with the queued ``activate`` job; ``GET /jobs/{job_id}`` follows it to
    ``succeeded`` (the version serves) or ``failed`` (``reason``: the previous version keeps
    serving). 404 ``unknown_version``; 409 ``version_rejected`` (it failed the retrain gate)
    or ``version_classes_differ`` (it detects classes the platform no longer has).
    """
    job = await run_in_threadpool(source.request_activation, version)
    return RetrainJobStatus.model_validate(job.model_dump())
