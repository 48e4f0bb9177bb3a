"""Carry out activation intents: the versions the gateway or an operator asked to serve.

The gateway records ``POST /models/{v}/activate`` as a queued ``activate`` job and answers 202;
the acting controller takes the oldest queued one (a compare-and-set ``queued -> running``, so
two controllers never run one), serves the version with the deployer ``DEPLOY_BACKEND`` names
(TorchServe hot swap, or KServe), and records ``succeeded`` or ``failed`` with the reason. An
activation a dead controller left ``running`` is recorded failed by the next one to act, before
it runs anything: the previous version kept serving (a hot swap rolls back what it began).
"""

from __future__ import annotations

import logging

from yoloserve.errors import YoloServeError
from yoloserve.modelserver.registry import Registry, RetrainJob, utcnow
from yoloserve.modelserver.rollout.base import Deployer, run_sync

logger = logging.getLogger("yoloserve.controller.rollouts")


class RolloutWorker:
    """Runs queued activations one at a time.

    Args:
        registry: where the intents and versions are.
        deployer: how a version is served.
    """

    def __init__(self, registry: Registry, deployer: Deployer) -> None:
        self.registry, self.deployer = registry, deployer

    def fail_orphans(self) -> list[str]:
        """Record activations left ``running`` (their controller died) as failed."""
        failed = []
        for job in self.registry.jobs(kind="activate", states=("running",)):
            done = self.registry.transition_job(
                job.job_id, ("running",), state="failed", finished_at=utcnow(),
                reason="the controller running it stopped; the previous version kept serving")
            if done is not None:
                failed.append(job.job_id)
                logger.warning("activation %s: its controller stopped; marked failed",
                               job.job_id)
        return failed

    def step(self) -> RetrainJob | None:
        """Run the oldest queued activation, if any; its final record, or None."""
        queued = self.registry.jobs(kind="activate", states=("queued",))
        if not queued:
            return None
        job = self.registry.transition_job(queued[0].job_id, ("queued",), state="running",
                                           started_at=utcnow())
        if job is None:  # another controller took it first
            return None
        version = job.version or ""
        logger.info("activation %s: serving version %s", job.job_id, version)
        try:
            record = run_sync(self.deployer.activate(version))
        except YoloServeError as exc:
            logger.warning("activation %s failed (%s): %s", job.job_id, exc.code, exc)
            return self.registry.update_job(job.job_id, state="failed", finished_at=utcnow(),
                                            reason=f"{exc.code}: {exc}")
        except Exception as exc:  # recorded, never left running: the loop goes on
            logger.exception("activation %s failed", job.job_id)
            return self.registry.update_job(job.job_id, state="failed", finished_at=utcnow(),
                                            reason=f"{type(exc).__name__}: {exc}")
        return self.registry.update_job(job.job_id, state="succeeded", finished_at=utcnow(),
                                        reason=f"version {record.version} serves")
