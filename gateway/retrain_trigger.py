"""Starting retrain jobs from the gateway: on demand, and when feedback crosses a multiple of k.

The job runs in its own process: ``yoloserve.retrain.jobs.start_job_process`` spawns it and returns
the job id at once, so the gateway's memory and event loop stay free and the job can be killed
without taking the API down. The spawn is still a blocking call (fork/exec, a registry write), so
it runs in the threadpool.

Counting is never kept in memory: the caller passes the row totals of the store transaction that
committed the feedback (row ids are positions), so a restarted gateway, or several gateway
replicas, agree on when the next multiple is crossed. Each commit covers its own interval
``(total - rows_written, total]`` of rows, so exactly one commit crosses each multiple of k.

Example:
    >>> crosses_multiple(48, 51, every_k=50), crosses_multiple(51, 53, every_k=50)
    (True, False)
    >>> next_multiple(50, every_k=50), next_multiple(51, every_k=50)
    (100, 100)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Literal, get_args

from starlette.concurrency import run_in_threadpool

from gateway.config import Settings
from gateway.metrics import GatewayMetrics
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import JobState, Registry
from yoloserve.retrain import jobs
from yoloserve.retrain.launchers.base import JobLauncher
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.schemas import RetrainInfo

logger = logging.getLogger("gateway.retrain")

Trigger = Literal["feedback", "api"]

# RetrainSettings field -> its value from the gateway's settings: a job started by this gateway
# talks to the same TorchServe and trains on the feedback this gateway stores, unless RETRAIN_*
# says otherwise explicitly.
_INHERITED_FIELDS: Mapping[str, Callable[[Settings], object]] = {
    "inference_url": lambda s: s.torchserve_inference_url,
    "management_url": lambda s: s.torchserve_management_url,
    "model_name": lambda s: s.model_name,
    "store": lambda s: s.store,
    "feedback_dir": lambda s: s.data_dir / "feedback",
}


def crosses_multiple(before: int, after: int, every_k: int) -> bool:
    """Whether going from ``before`` to ``after`` rows passes a multiple of ``every_k``."""
    return after // every_k > before // every_k


def next_multiple(total: int, every_k: int) -> int:
    """The smallest multiple of ``every_k`` above ``total``: the row count of the next trigger."""
    return (total // every_k + 1) * every_k


def count_job_states(registry: Registry) -> dict[str, int]:
    """Retrain jobs of the registry per state (what ``/metrics`` reports), 0 for states none is in.

    Every state is there from the first scrape on, so an alert on the growth of ``failed`` or
    ``rejected`` sees the first such job as a step from 0 rather than a new series.
    """
    counts = dict.fromkeys(get_args(JobState), 0)
    counts.update(Counter(job.state for job in registry.load().jobs))
    return counts


def serving_version(registry: Registry) -> str | None:
    """The registry's default version (what unpinned predictions are served by), if any."""
    default = registry.default()
    return default.version if default is not None else None


def retrain_settings_for(
    settings: Settings, base: RetrainSettings | None = None
) -> RetrainSettings:
    """The retrain settings of jobs this gateway starts.

    Args:
        settings: The gateway's settings; its TorchServe URLs, model name, registry and
            feedback folder fill the fields that ``RETRAIN_*`` does not set.
        base: Settings to start from; ``RetrainSettings()`` (the environment) when None.
    """
    base = base if base is not None else RetrainSettings()
    fields = type(base).model_fields
    updates = {
        field: value_of(settings)
        for field, value_of in _INHERITED_FIELDS.items()
        if field in fields and field not in base.model_fields_set
    }
    return base.model_copy(update=updates) if updates else base


class RetrainTrigger:
    """Starts retrain jobs and decides when feedback starts one.

    Args:
        settings: What the job is started with; ``every_k`` is the feedback trigger period
            (below 1: feedback never triggers).
        registry: The registry the job records itself in.
        metrics: Counts starts by trigger and outcome.
    """

    def __init__(
        self, settings: RetrainSettings, registry: Registry, metrics: GatewayMetrics
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        # Where jobs run (RETRAIN_LAUNCHER); it reads no cluster config until it is used.
        self.launcher: JobLauncher = launcher_from_settings(settings)

    @property
    def every_k(self) -> int:
        """Rows of feedback between two triggered jobs."""
        return int(self.settings.every_k)

    async def start(self, trigger: Trigger) -> str:
        """Spawn a retrain job now.

        Returns:
            The job id (``GET /retrain/{job_id}`` follows it).

        Raises:
            RetrainAlreadyRunning: A job is queued or running.
        """
        try:
            # Looked up at call time, not imported by name: one place to replace it in tests.
            job_id = await run_in_threadpool(
                jobs.start_job_process, self.settings, trigger=trigger, registry=self.registry,
                launcher=self.launcher,
            )
        except RetrainAlreadyRunning:
            self.metrics.retrains.labels(trigger=trigger, outcome="already_running").inc()
            raise
        except Exception:
            self.metrics.retrains.labels(trigger=trigger, outcome="start_failed").inc()
            raise
        self.metrics.retrains.labels(trigger=trigger, outcome="started").inc()
        logger.info("retrain job %s started (trigger: %s)", job_id, trigger)
        return job_id

    async def after_feedback(self, rows_before: int, rows_after: int) -> RetrainInfo:
        """Start a job if this feedback took the stored rows past a multiple of k.

        Never raises: the feedback rows are already stored, and an error answer would make the
        client send them again. A job that cannot start now (one is running, or the spawn
        failed) leaves ``triggered`` false; the rows then count towards the next multiple.

        Args:
            rows_before: Feedback rows in the store just before this feedback's commit.
            rows_after: Feedback rows right after it.

        Returns:
            The ``retrain`` part of the feedback answer.
        """
        k = self.every_k
        if k < 1:
            return RetrainInfo(triggered=False, job_id=None, next_at_rows=None)
        next_at = next_multiple(rows_after, k)
        if not crosses_multiple(rows_before, rows_after, k):
            return RetrainInfo(triggered=False, job_id=None, next_at_rows=next_at)
        try:
            job_id = await self.start("feedback")
        except RetrainAlreadyRunning:
            logger.info(
                "feedback reached %d rows, but a retrain job is already running; "
                "the next trigger is at %d rows",
                rows_after,
                next_at,
            )
            return RetrainInfo(triggered=False, job_id=None, next_at_rows=next_at)
        except Exception:
            logger.exception("retrain job could not be started at %d rows", rows_after)
            return RetrainInfo(triggered=False, job_id=None, next_at_rows=next_at)
        return RetrainInfo(triggered=True, job_id=job_id, next_at_rows=next_at)
