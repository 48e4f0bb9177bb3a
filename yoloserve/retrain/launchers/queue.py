"""``RETRAIN_LAUNCHER=queue``: nothing is started; the trainer service claims the queued job.

Liveness comes from the trainers' heartbeat files in the run dir (``yoloserve.retrain.heartbeat``),
since the gateway and the trainer share only volumes, not a PID namespace: a queued job waits
while some trainer beats, and is ``unstarted`` (reaped after the start grace) while none does; a
running job lives while the fresh beat of its trainer names it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.heartbeat import is_fresh, read_heartbeats, stale_after_s
from yoloserve.retrain.launchers.base import ALIVE, Liveness
from yoloserve.retrain.settings import RetrainSettings

logger = logging.getLogger("yoloserve.retrain")

NO_TRAINER = ("no trainer is running: start the trainer service "
              "(python -m yoloserve.retrain trainer)")


class QueueLauncher:
    """The job left queued for the trainer service (see the module docstring)."""

    kind = "queue"

    def __init__(self, settings: RetrainSettings) -> None:
        self.settings = settings

    def start(self, job_id: str, settings: RetrainSettings, registry: Registry) -> dict[str, Any]:
        if any(is_fresh(b, self.settings) for b in read_heartbeats(self.settings)):
            logger.info("retrain job %s queued for the trainer", job_id)
        else:
            logger.warning("retrain job %s queued, but %s", job_id, NO_TRAINER)
        return {}

    def liveness(self, jobs: Sequence[RetrainJob]) -> dict[str, Liveness]:
        beats = read_heartbeats(self.settings)
        fresh = [b for b in beats if is_fresh(b, self.settings)]
        running = {b.job_id for b in fresh if b.job_id}
        out = {}
        for job in jobs:
            if job.job_id in running:
                out[job.job_id] = ALIVE
            elif job.state == "queued":
                out[job.job_id] = ALIVE if fresh else Liveness("unstarted", NO_TRAINER)
            else:
                last = [b for b in beats if b.job_id == job.job_id]
                who = (f"trainer {last[0].trainer_id} (host {last[0].hostname}, pid "
                       f"{last[0].pid})" if last else "its trainer")
                out[job.job_id] = Liveness(
                    "dead", f"{who} stopped beating (no heartbeat for "
                            f"{stale_after_s(self.settings):.0f} s) without finishing the job")
        return out

    def running_elsewhere(self) -> str | None:
        return None  # the trainer holds the retrain lock while it runs a job: the lock says it
