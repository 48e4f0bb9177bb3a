"""The trainer service: claims queued retrain jobs and runs them, one at a time.

With ``RETRAIN_LAUNCHER=queue`` the gateway only records a job as ``queued``; this loop (``python
-m yoloserve.retrain trainer``, its own container in compose, a supervised program in ``make
demo``) is the only process with the training stack. Each turn::

    beat (also from a thread, every RETRAIN_TRAINER_HEARTBEAT_S, while a job runs too)
      --> reap stale jobs (a running job whose trainer stopped beating: failed)
      --> the oldest queued job: name it in the heartbeat, claim_job (the retrain lock without
          waiting, then run_job: deadline, gate, swap unchanged), heartbeat idle again
      --> nothing queued: sleep RETRAIN_TRAINER_POLL_S

The job runs with this process's ``RETRAIN_*`` settings. SIGTERM (installed by the CLI) raises
``SystemExit`` in the loop; a job being run is then recorded ``failed`` by ``run_job``, and the
heartbeat file is removed on the way out. Two trainers on one run dir are safe (the lock lets
one of them run a job; the other finds it no longer queued) though one is enough.

Example:
    >>> Trainer(RetrainSettings(launcher="queue")).run_forever()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading

from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.heartbeat import Heartbeater, prune_heartbeats
from yoloserve.retrain.jobs import claim_job, launch_queued, reap_stale_jobs
from yoloserve.retrain.launchers.base import JobLauncher
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.queue import QueueLauncher
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.store.engine import open_store
from yoloserve.tracking.watch import MirrorWatch

logger = logging.getLogger("yoloserve.retrain.trainer")


def oldest_queued(registry: Registry) -> RetrainJob | None:
    """The queued job recorded first (job ids grow with time), or None."""
    queued = registry.jobs(kind="retrain", states=("queued",))
    return min(queued, key=lambda j: j.job_id) if queued else None


class Trainer:
    """The loop of the trainer service (see the module docstring).

    Args:
        settings: How jobs run, and where (registry, run dir); ``trainer_*`` pace the loop.
        registry: The registry jobs are recorded in; ``settings.store`` when None.
        trainer_id: Its heartbeat's name; a fresh random one when None.
    """

    def __init__(
        self,
        settings: RetrainSettings,
        registry: Registry | None = None,
        trainer_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or Registry(open_store(settings.store.url))
        self.heartbeat = Heartbeater(settings, trainer_id)
        # queue: this loop runs each job itself; process / kubernetes / pipeline: it hands the
        # job to that launcher (a detached process, a Job, a KFP run) and reaps it by its means.
        self.launcher: JobLauncher = (
            QueueLauncher(settings) if settings.launcher == "queue"
            else launcher_from_settings(settings)
        )
        self.mirror = MirrorWatch(self.registry, settings.run_dir)

    @property
    def trainer_id(self) -> str:
        """The name of this trainer's heartbeat file."""
        return self.heartbeat.trainer_id

    def step(self) -> RetrainJob | None:
        """One turn: reap, then run the oldest queued job if the lock is free.

        Needs the heartbeat running (``run_forever`` or ``with trainer.heartbeat``): the reaping
        judges queued jobs by fresh heartbeats, this trainer's included.

        Returns:
            The job's final record, or None when nothing was run.
        """
        for job_id in reap_stale_jobs(self.registry, launcher=self.launcher):
            logger.warning("job %s: marked failed (%s)", job_id,
                           self.registry.get_job(job_id).reason)
        job = oldest_queued(self.registry)
        if job is None:
            return None
        if self.settings.launcher != "queue":
            launched = launch_queued(job, self.settings, self.registry, self.launcher)
            logger.info("job %s: %s by the %s launcher", job.job_id, launched.state,
                        self.launcher.kind)
            return None
        # Named before the registry says running, so no starter ever sees it running unbeaten.
        self.heartbeat.set_job(job.job_id)
        handler = _job_log_handler(self.settings, job.job_id)
        try:
            logger.info("job %s: claimed by %s (trigger %s)", job.job_id, self.trainer_id,
                        job.trigger)
            done = claim_job(job.job_id, self.settings, self.registry)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
            self.heartbeat.set_job(None)
        if done is None:
            logger.info("job %s: the retrain lock is held; looking again in %.1f s", job.job_id,
                        self.settings.trainer_poll_s)
        else:
            logger.info("job %s: %s (%s)", done.job_id, done.state, done.reason)
        return done

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Beat and run queued jobs until ``stop`` is set (or SystemExit: SIGTERM)."""
        stop = stop or threading.Event()
        pruned = prune_heartbeats(self.settings)
        if pruned:
            logger.info("removed the heartbeats of trainers long gone: %s", ", ".join(pruned))
        with self.heartbeat:
            logger.info("trainer %s up: run dir %s, registry %s, polling every %.1f s",
                        self.trainer_id, self.settings.run_dir, self.registry.store,
                        self.settings.trainer_poll_s)
            while not stop.is_set():
                if self.step() is None:
                    self.mirror.poll()  # MLFLOW_TRACKING_URI set: MLflow follows the registry
                    stop.wait(self.settings.trainer_poll_s)
        logger.info("trainer %s stopped", self.trainer_id)


def _job_log_handler(settings: RetrainSettings, job_id: str) -> logging.Handler:
    # The job's own log, as with a job process (`.run/retrain/<id>.log`), beside the trainer's.
    path = job_log(settings, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
