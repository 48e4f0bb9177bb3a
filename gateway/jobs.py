"""Reading jobs for the API: retrains and activations, as the controller records them."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from yoloserve.errors import RegistryError
from yoloserve.modelserver.registry import Registry
from yoloserve.schemas import RetrainJobStatus

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def read_job(registry: Registry, job_id: str) -> RetrainJobStatus:
    """The contract's view of one job record.

    Raises:
        UnknownJob: No such job.
        RegistryError: The store cannot be read.
    """
    try:
        job = registry.get_job(job_id)
    except (OSError, ValueError, ValidationError, SQLAlchemyError) as exc:
        raise RegistryError(f"the registry cannot be read: {exc}") from exc
    return RetrainJobStatus.model_validate(job.model_dump())
