"""Acting and standing by: the controller runs the trainer's loop only while it holds the lease.

Each round::

    try_acquire --no--> standby: wait a third of the lease, try again
        |yes
    act: a thread renews every third of the lease; a thread runs queued activations
         (``rollouts``); the trainer's loop (yoloserve.retrain.trainer) claims queued retrain
         jobs and runs them; a lost renewal stops both after the job in hand
    --> release on the way out (SIGTERM), so a standby takes over at once

A controller that dies stops renewing: a standby takes the lease once it expired
(``CONTROLLER_LEASE_DURATION_S``, 15 s by default) and reaps what the dead one left running
(the trainer's stale-job reaping), so a job never stays ``running``.
"""

from __future__ import annotations

import logging
import threading

from yoloserve.controller.lease.base import Lease
from yoloserve.controller.rollouts import RolloutWorker
from yoloserve.retrain.trainer import Trainer

logger = logging.getLogger("yoloserve.controller")


class Controller:
    """One candidate controller.

    Args:
        lease: the lease it competes for.
        trainer: runs retrain jobs while acting.
        rollouts: runs activations while acting.
        poll_s: seconds between two looks for a queued activation.
    """

    def __init__(self, lease: Lease, trainer: Trainer, rollouts: RolloutWorker,
                 poll_s: float = 1.0) -> None:
        self.lease, self.trainer, self.rollouts, self.poll_s = lease, trainer, rollouts, poll_s
        self.acting = threading.Event()

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Compete for the lease and act while holding it, until ``stop`` is set."""
        stop = stop or threading.Event()
        period = self.lease.duration_s / 3
        waiting_logged = False
        try:
            while not stop.is_set():
                if not self._try(self.lease.try_acquire):
                    if not waiting_logged:
                        logger.info("controller %s: standby (another holds the lease)",
                                    self.lease.holder)
                        waiting_logged = True
                    stop.wait(period)
                    continue
                waiting_logged = False
                self._act(stop, period)
        finally:
            self.acting.clear()
            self._try(self.lease.release)

    def _act(self, stop: threading.Event, period: float) -> None:
        logger.info("controller %s: acting (lease held)", self.lease.holder)
        self.acting.set()
        done = threading.Event()  # the trainer's loop stops when this is set

        def keep() -> None:
            while not done.wait(period):
                if stop.is_set() or not self._try(self.lease.renew):
                    if not stop.is_set():
                        logger.warning("controller %s: lease lost; stopping after the job in "
                                       "hand", self.lease.holder)
                    done.set()

        def roll() -> None:
            self._try(self.rollouts.fail_orphans)
            while not done.is_set():
                try:
                    ran = self.rollouts.step()
                except Exception:  # the store briefly away: look again
                    logger.exception("activation step failed")
                    ran = None
                if ran is None:
                    done.wait(self.poll_s)

        threads = [threading.Thread(target=keep, name="lease-keeper", daemon=True),
                   threading.Thread(target=roll, name="rollouts", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            self.trainer.run_forever(done)
        finally:
            done.set()
            for thread in threads:
                thread.join()
            self.acting.clear()

    @staticmethod
    def _try(call: object) -> bool:
        try:
            result = call()  # type: ignore[operator]
        except Exception:  # the store or the API server briefly away: not fatal, try again
            logger.exception("lease call failed")
            return False
        return result is not False
