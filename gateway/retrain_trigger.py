"""Retrain intents from the gateway: on demand, and when feedback crosses a multiple of k.

The gateway runs no job: it records a ``queued`` retrain in the store and answers at once; the
acting controller (``yoloserve.controller``) claims it and runs it (in its own process, a
Kubernetes Job or a KFP run). The check that none is queued or running and the insert are one
serialised transaction (``Registry.record_job_if_idle``), so two replicas asked at the same
instant record one job.

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
from typing import Literal, get_args

from starlette.concurrency import run_in_threadpool

from gateway.metrics import GatewayMetrics
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import JobState, Registry, RetrainJob, utcnow
from yoloserve.schemas import RetrainInfo

logger = logging.getLogger("gateway.retrain")

Trigger = Literal["feedback", "api"]

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
    counts.update(registry.count_jobs("retrain"))
    return counts


def serving_version(registry: Registry) -> str | None:
    """The registry's default version (what unpinned predictions are served by), if any."""
    default = registry.default()
    return default.version if default is not None else None


class RetrainTrigger:
    """Starts retrain jobs and decides when feedback starts one.

    Args:
        every_k: Rows of feedback between two triggered jobs (below 1: feedback never
            triggers; ``RETRAIN_EVERY_K``).
        registry: Where the intent is recorded.
        metrics: Counts requests by trigger and outcome.
    """

    def __init__(self, every_k: int, registry: Registry, metrics: GatewayMetrics) -> None:
        self.every_k = every_k
        self.registry = registry
        self.metrics = metrics

    async def start(self, trigger: Trigger) -> RetrainJob:
        """Record a queued retrain job now (the controller runs it).

        Returns:
            The job's record (``GET /retrain/{job_id}`` follows it).

        Raises:
            RetrainAlreadyRunning: A retrain job is queued or running.
        """
        try:
            job = await run_in_threadpool(
                self.registry.record_job_if_idle, kind="retrain", trigger=trigger,
                created_at=utcnow(),
            )
        except RetrainAlreadyRunning:
            self.metrics.retrains.labels(trigger=trigger, outcome="already_running").inc()
            raise
        except Exception:
            self.metrics.retrains.labels(trigger=trigger, outcome="start_failed").inc()
            raise
        self.metrics.retrains.labels(trigger=trigger, outcome="started").inc()
        logger.info("retrain job %s queued (trigger: %s)", job.job_id, trigger)
        return job

    def quiet(self, rows_before: int, rows_after: int) -> RetrainInfo | None:
        """The ``retrain`` answer of a feedback that starts no job, or None when it passes a
        multiple of k (then :meth:`after_feedback` decides). Pure: the feedback service calls
        it inside the store transaction that commits the rows, to store the answer with them.
        """
        k = self.every_k
        if k < 1:
            return RetrainInfo(triggered=False, job_id=None, next_at_rows=None)
        if crosses_multiple(rows_before, rows_after, k):
            return None
        return RetrainInfo(triggered=False, job_id=None, next_at_rows=next_multiple(rows_after, k))

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
        info = self.quiet(rows_before, rows_after)
        if info is not None:
            return info
        next_at = next_multiple(rows_after, self.every_k)
        try:
            job_id = (await self.start("feedback")).job_id
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
