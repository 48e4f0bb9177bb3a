"""``POST /retrain`` (admin: start a job now) and ``GET /retrain/{job_id}`` (follow one).

Jobs run in their own process and record their progress in the registry (``models/registry.json``),
so any gateway worker, or a restarted gateway, reports the same state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.deps import RegistryDep, RetrainDep, require_admin_key
from gateway.errors import error_responses
from yoloserve.errors import RegistryError
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.jobs import reap_stale_jobs
from yoloserve.retrain.launchers.base import JobLauncher
from yoloserve.schemas import RetrainJobStatus

router = APIRouter(tags=["retrain"])

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def read_job(
    registry: Registry, job_id: str, launcher: JobLauncher | None = None
) -> RetrainJobStatus:
    """The contract's view of one job record (``launcher`` judges whether its process lives).

    Raises:
        UnknownJob: No such job.
        RegistryError: The registry file cannot be read.
    """
    try:
        # A job whose process died (killed, machine restarted) reads as failed, not as running.
        reap_stale_jobs(registry, launcher=launcher)
        data = registry.load()
    except (OSError, ValueError, ValidationError) as exc:
        raise RegistryError(f"the registry cannot be read: {exc}") from exc
    return RetrainJobStatus.model_validate(data.get_job(job_id).model_dump())


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainJobStatus,
    responses=error_responses(401, 403, 409, 500, 502),
    dependencies=[Depends(require_admin_key)],
    summary="Start a retrain job now",
)
async def start_retrain(retrain: RetrainDep) -> RetrainJobStatus:
    """202 with the new job's id; follow it with ``GET /retrain/{job_id}``.

    409 ``retrain_already_running`` while another job is queued or running (or a trainer Job is
    active); 502 ``kubernetes_error`` when the trainer Job cannot be created.
    """
    job_id = await retrain.start("api")
    return RetrainJobStatus(job_id=job_id, state="queued")


@router.get(
    "/retrain/{job_id}",
    response_model=RetrainJobStatus,
    responses=error_responses(400, 404, 500),
    summary="State of a retrain job",
)
async def get_retrain(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="e.g. r-0007")],
    registry: RegistryDep,
    retrain: RetrainDep,
) -> RetrainJobStatus:
    """``queued``, ``running``, then ``succeeded`` (the candidate serves), ``rejected`` (it did
    not beat the current model; ``reason`` says by how much) or ``failed`` (``reason``)."""
    return await run_in_threadpool(read_job, registry, job_id, retrain.launcher)
