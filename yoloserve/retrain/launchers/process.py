"""``RETRAIN_LAUNCHER=process`` (default): the job as a detached local process.

``python -m yoloserve.retrain run --job-id ID`` in its own session, its pid recorded in the job;
alive while that pid runs a retrain process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import psutil

from yoloserve import paths
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.launchers.base import ALIVE, Liveness, job_command
from yoloserve.retrain.settings import RetrainSettings, job_log

logger = logging.getLogger("yoloserve.retrain")


def job_process_alive(pid: int | None, job_id: str) -> bool:
    """Whether ``pid`` is still the process running ``job_id`` (not a zombie, not a reused pid)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process we cannot inspect: assume it is the job
    return job_id in cmdline or "yoloserve.retrain" in cmdline


class ProcessLauncher:
    """The job as a detached ``python -m yoloserve.retrain run`` on this machine."""

    kind = "process"

    def start(self, job_id: str, settings: RetrainSettings, registry: Registry) -> dict[str, Any]:
        log = job_log(settings, job_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *job_command(job_id)],
                cwd=paths.ROOT,
                env=settings.child_environment(registry.store.url),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives a gateway restart; killable as a group
            )
        # Reap it when it ends, so a long-lived starter (the gateway) collects no zombies.
        threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
        logger.info("retrain job %s started (pid %s, log %s)", job_id, proc.pid, log)
        return {"pid": proc.pid}

    def liveness(self, jobs: Sequence[RetrainJob]) -> dict[str, Liveness]:
        out = {}
        for job in jobs:
            if job.pid is None:
                out[job.job_id] = Liveness("unstarted", "the job process was never started")
            elif job_process_alive(job.pid, job.job_id):
                out[job.job_id] = ALIVE
            else:
                out[job.job_id] = Liveness(
                    "dead", f"the job process (pid {job.pid}) ended without finishing"
                )
        return out

    def running_elsewhere(self) -> str | None:
        return None  # a local job process holds the retrain lock: the lock says it all
