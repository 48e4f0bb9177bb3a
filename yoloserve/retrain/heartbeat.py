"""Trainer heartbeats: how a starter in another container tells that a trainer lives.

Pids mean nothing across containers (each has its own PID namespace), and the gateway and the
trainer share only the models volume and the retrain run dir. So a trainer proves it lives by
rewriting ``<run_dir>/trainers/<trainer_id>.json`` every ``RETRAIN_TRAINER_HEARTBEAT_S``
(atomically: a reader sees the old beat or the new one), from a thread, so it keeps beating while
a job runs::

    {"trainer_id": "trainer-5f3a9c", "hostname": "gpu-1", "pid": 1, "job_id": "r-0007",
     "at": 1767225600.0, "started_at": 1767225000.0}

A beat is fresh while it is younger than ``heartbeat_s * stale_heartbeats`` (``stale_after_s``).
``yoloserve.retrain.launchers.queue.QueueLauncher`` reads them: a queued job waits while some
trainer is fresh, a running job lives while the fresh beat of its trainer names it.

Example:
    >>> beat = Heartbeat(trainer_id="t-1", hostname="h", pid=1, job_id=None, at=10.0,
    ...                  started_at=0.0)
    >>> beat.age_s(now=12.5)
    2.5
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ValidationError

from yoloserve.files import atomic_write
from yoloserve.retrain.settings import RetrainSettings

logger = logging.getLogger("yoloserve.retrain")

TRAINERS_DIR = "trainers"


class Heartbeat(BaseModel):
    """One trainer's last beat: who it is, where, and the job it runs (None: idle)."""

    trainer_id: str
    hostname: str
    pid: int
    job_id: str | None
    at: float  # time.time(): the containers share the host's clock
    started_at: float

    def age_s(self, now: float | None = None) -> float:
        """Seconds since this beat was written."""
        return (time.time() if now is None else now) - self.at


def heartbeat_dir(settings: RetrainSettings) -> Path:
    """The folder of the trainers' heartbeat files."""
    return settings.run_dir / TRAINERS_DIR


def stale_after_s(settings: RetrainSettings) -> float:
    """Age after which a beat no longer proves its trainer lives."""
    return settings.trainer_heartbeat_s * settings.trainer_stale_heartbeats


def read_heartbeats(settings: RetrainSettings) -> list[Heartbeat]:
    """Every trainer's last beat, fresh or not; unreadable files are skipped."""
    beats = []
    for path in sorted(heartbeat_dir(settings).glob("*.json")):
        try:
            beats.append(Heartbeat.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError, ValueError):
            continue  # removed meanwhile, or not ours: it proves nothing
    return beats


def is_fresh(beat: Heartbeat, settings: RetrainSettings, now: float | None = None) -> bool:
    """Whether ``beat`` is recent enough to prove its trainer lives."""
    return beat.age_s(now) < stale_after_s(settings)


def prune_heartbeats(settings: RetrainSettings, older_than_s: float = 3600.0) -> list[str]:
    """Delete beats older than ``older_than_s`` (trainers long gone); returns their ids."""
    gone = []
    now = time.time()
    for beat in read_heartbeats(settings):
        if beat.age_s(now) > older_than_s:
            with contextlib.suppress(OSError):
                (heartbeat_dir(settings) / f"{beat.trainer_id}.json").unlink()
                gone.append(beat.trainer_id)
    return gone


class Heartbeater:
    """Writes this process's heartbeat every ``heartbeat_s`` from a daemon thread.

    Use it as a context manager: the first beat is written on entry, the file is removed on exit
    (a trainer that stops cleanly is gone at once, not after the stale delay). ``set_job`` writes
    a beat at once, so the beat names a job before the registry says it runs.
    """

    def __init__(self, settings: RetrainSettings, trainer_id: str | None = None) -> None:
        self.settings = settings
        self.trainer_id = trainer_id or f"trainer-{uuid.uuid4().hex[:12]}"
        self.path = heartbeat_dir(settings) / f"{self.trainer_id}.json"
        self.job_id: str | None = None
        self._started_at = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def beat(self) -> None:
        """Write the heartbeat now."""
        with self._lock:
            record = Heartbeat(trainer_id=self.trainer_id, hostname=socket.gethostname(),
                               pid=os.getpid(), job_id=self.job_id, at=time.time(),
                               started_at=self._started_at)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, record.model_dump_json().encode())

    def set_job(self, job_id: str | None) -> None:
        """Name the job this process runs (None: idle) in the next beat, written at once."""
        self.job_id = job_id
        self.beat()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.trainer_heartbeat_s):
            try:
                self.beat()
            except OSError as exc:  # a full or vanished volume: say so, keep trying
                logger.warning("heartbeat %s not written: %s", self.path, exc)

    def __enter__(self) -> Heartbeater:
        self.beat()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            self.path.unlink(missing_ok=True)
