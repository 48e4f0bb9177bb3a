"""``POST /retrain`` (admin: ask for a job now) and ``GET /retrain/{job_id}`` (follow one).

The gateway records the job as ``queued`` in the store and answers 202; the acting controller
runs it and records its progress there, so any replica, or a restarted gateway, reports the
same state. A job whose controller died is marked failed by the controller that takes over.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from gateway.deps import RegistryDep, RetrainDep, require_admin_key
from gateway.errors import error_responses
from gateway.jobs import JOB_ID_PATTERN, read_job
from yoloserve.schemas import RetrainJobStatus

router = APIRouter(tags=["retrain"])


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainJobStatus,
    responses=error_responses(401, 403, 409, 500),
    dependencies=[Depends(require_admin_key)],
    summary="Ask for a retrain job now",
)
async def start_retrain(retrain: RetrainDep) -> RetrainJobStatus:
    """202 with the queued job; follow it with ``GET /retrain/{job_id}``.

    409 ``retrain_already_running`` while another retrain job is queued or running.
    """
    job = await retrain.start("api")
    return RetrainJobStatus.model_validate(job.model_dump())


@router.get(
    "/retrain/{job_id}",
    response_model=RetrainJobStatus,
    responses=error_responses(400, 404, 500),
    summary="State of a retrain job",
)
async def get_retrain(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="e.g. r-0007")],
    registry: RegistryDep,
) -> RetrainJobStatus:
    """``queued``, ``running``, then ``succeeded`` (the candidate serves), ``rejected`` (it did
    not beat the current model; ``reason`` says by how much) or ``failed`` (``reason``)."""
    return await run_in_threadpool(read_job, registry, job_id)
