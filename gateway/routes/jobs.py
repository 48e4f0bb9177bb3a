"""``GET /jobs/{job_id}``: any job the controller carries out (a retrain, an activation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from gateway.deps import RegistryDep
from gateway.errors import error_responses
from gateway.jobs import JOB_ID_PATTERN, read_job
from yoloserve.schemas import RetrainJobStatus

router = APIRouter(tags=["jobs"])


@router.get(
    "/jobs/{job_id}",
    response_model=RetrainJobStatus,
    responses=error_responses(400, 404, 500),
    summary="State of a job (retrain or activation)",
)
async def get_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="e.g. a-0003, r-0007")],
    registry: RegistryDep,
) -> RetrainJobStatus:
    """``queued``, ``running``, then ``succeeded``, ``rejected`` (retrains only) or ``failed``
    with its ``reason``."""
    return await run_in_threadpool(read_job, registry, job_id)
