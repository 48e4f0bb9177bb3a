"""Retrain progress: the job's phase, and "epoch i of N, ETA" while it trains.

A job runs for minutes in another process (a job process, the trainer service, its spawned
training child), so its progress goes where the gateway reads job state: the job's record in
the registry (``RetrainJob.progress``, what ``GET /retrain/{id}`` answers), and one line per
phase or epoch in the job's log. Each write is one row's transaction, kept to one
per phase and one per epoch::

    dataset --> training (epoch 1..N of N, eta_s) --> evaluating --> packaging --> swapping

``eta_s`` is the time training still needs: the mean of the epoch durations measured so far
(each from the end of the one before, the first from the start of training) times the epochs
left. It is None until one epoch has been measured.

A progress write that fails (the store busy past its timeout, unreachable, a full disk) is logged
and ignored: the job's outcome never depends on its progress bar.

Example:
    >>> reporter = ProgressReporter(None, "r-0001")  # no registry: log lines only
    >>> reporter.phase("dataset")
    >>> callbacks = reporter.ultralytics_callbacks()  # for training.train(callbacks=...)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from yoloserve.errors import RegistryError
from yoloserve.modelserver.registry import Registry, RetrainPhase, RetrainProgress, utcnow
from yoloserve.store.engine import open_store

logger = logging.getLogger("yoloserve.retrain")


def epoch_eta(durations: list[float], epoch: int, epochs: int) -> float | None:
    """Seconds left for ``epochs - epoch`` epochs at the mean measured duration.

    >>> epoch_eta([30.0, 34.0], 2, 8)
    192.0
    >>> epoch_eta([], 0, 8) is None
    True
    """
    if not durations:
        return None
    return round(sum(durations) / len(durations) * max(0, epochs - epoch), 1)


#: Share of a whole job each phase roughly spans, for one bar across every phase (training
#: dominates: ~90 % of a measured 8-epoch job). gateway_client.PHASE_SPANS is the client's copy.
PHASE_SPANS: dict[str, tuple[float, float]] = {
    "dataset": (0.0, 0.05),
    "training": (0.05, 0.85),
    "evaluating": (0.85, 0.93),
    "packaging": (0.93, 0.97),
    "swapping": (0.97, 1.0),
}


def progress_fraction(progress: RetrainProgress) -> float:
    """Share of the whole job done (0..1) at this point.

    >>> progress_fraction(RetrainProgress(phase="training", epoch=3, epochs=8))
    0.35
    """
    start, end = PHASE_SPANS[progress.phase]
    within = 0.0
    if progress.phase == "training" and progress.epoch is not None and progress.epochs:
        within = min(1.0, progress.epoch / progress.epochs)
    return round(start + (end - start) * within, 4)


def progress_label(progress: RetrainProgress) -> str:
    """One human line: ``'training: epoch 3 of 8, ETA 95 s'``, or just the phase."""
    if progress.phase != "training" or not progress.epochs:
        return progress.phase
    text = f"training: epoch {progress.epoch or 0} of {progress.epochs}"
    return text if progress.eta_s is None else f"{text}, ETA {progress.eta_s:.0f} s"


class ProgressReporter:
    """Records one job's progress in its registry record and in the log.

    Args:
        registry: Where the job is recorded; None: log lines only (e.g. a step run without a job).
        job_id: The job.
        clock: Monotonic clock (seconds); tests pass a scripted one.
    """

    def __init__(
        self, registry: Registry | None, job_id: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if job_id else None
        self.job_id = job_id
        self.clock = clock
        self._durations: list[float] = []
        self._last_mark: float | None = None

    @classmethod
    def for_job(cls, store_url: str, job_id: str | None) -> ProgressReporter:
        """A reporter with its own ``Registry`` (what a spawned or remote step builds)."""
        return cls(Registry(open_store(store_url)), job_id)

    def phase(self, phase: RetrainPhase) -> None:
        """Enter ``phase``: one record write and one log line."""
        logger.info("job %s: phase %s", self.job_id, phase)
        self._write(RetrainProgress(phase=phase, updated_at=utcnow()))

    def epoch(self, epoch: int, epochs: int, eta_s: float | None) -> None:
        """Epoch ``epoch`` of ``epochs`` finished (training phase)."""
        eta = "unknown" if eta_s is None else f"{eta_s:.0f} s"
        logger.info("job %s: training epoch %d of %d, ETA %s", self.job_id, epoch, epochs, eta)
        self._write(RetrainProgress(phase="training", epoch=epoch, epochs=epochs, eta_s=eta_s,
                                    updated_at=utcnow()))

    def ultralytics_callbacks(self) -> dict[str, Callable[[Any], None]]:
        """Callbacks for Ultralytics' trainer: training starts, each epoch (with val) ends."""

        def on_train_start(trainer: Any) -> None:
            self._durations.clear()
            self._last_mark = self.clock()
            epochs = int(trainer.epochs)
            logger.info("job %s: training epoch 0 of %d", self.job_id, epochs)
            self._write(RetrainProgress(phase="training", epoch=0, epochs=epochs,
                                        updated_at=utcnow()))

        def on_fit_epoch_end(trainer: Any) -> None:
            epoch, epochs = int(trainer.epoch) + 1, int(trainer.epochs)
            if epoch > epochs:
                return  # Ultralytics' final validation of best.pt reports as epoch N+1
            now = self.clock()
            if self._last_mark is not None:
                self._durations.append(now - self._last_mark)
            self._last_mark = now
            self.epoch(epoch, epochs, epoch_eta(self._durations, epoch, epochs))

        return {"on_train_start": on_train_start, "on_fit_epoch_end": on_fit_epoch_end}

    def _write(self, progress: RetrainProgress) -> None:
        if self.registry is None or self.job_id is None:
            return
        try:
            self.registry.set_job_progress(self.job_id, progress)
        except (SQLAlchemyError, OSError, RegistryError) as exc:
            logger.warning("job %s: progress not recorded (%s: %s)", self.job_id,
                           type(exc).__name__, exc)


def chain_callbacks(
    *groups: Mapping[str, Callable[[Any], None]] | None,
) -> dict[str, Callable[[Any], None]]:
    """One Ultralytics callback per event that calls each group's, in order.

    ``training.train`` takes one function per event; tracking and progress both want
    ``on_fit_epoch_end``.
    """
    by_event: dict[str, list[Callable[[Any], None]]] = {}
    for group in groups:
        for event, function in (group or {}).items():
            by_event.setdefault(event, []).append(function)

    def chained(functions: list[Callable[[Any], None]]) -> Callable[[Any], None]:
        def call(trainer: Any) -> None:
            for function in functions:
                function(trainer)
        return call

    return {event: chained(functions) for event, functions in by_event.items()}
