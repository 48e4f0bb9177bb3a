"""The launcher interface: ``JobLauncher``, what it reports (``Liveness``), the job's command.

The launchers (``process``, ``queue``, ``kubernetes``, ``pipeline``) import this module only;
``factory`` alone imports them.

Example:
    >>> job_command("r-0007")
    ['-m', 'yoloserve.retrain', 'run', '--job-id', 'r-0007']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.settings import RetrainSettings


@dataclass(frozen=True)
class Liveness:
    """What a launcher knows of a job's process: ``alive``, ``dead`` (why), ``unstarted``."""

    state: Literal["alive", "dead", "unstarted"]
    reason: str = ""


ALIVE = Liveness("alive")


class JobLauncher(Protocol):
    """Starts job processes and reports whether they live."""

    kind: str

    def start(self, job_id: str, settings: RetrainSettings, registry: Registry) -> dict[str, Any]:
        """Start the process of recorded job ``job_id``; answers fields to record in the job.

        Raises:
            OSError, KubernetesError: it could not be started.
        """
        ...

    def liveness(self, jobs: Sequence[RetrainJob]) -> dict[str, Liveness]:
        """Each queued or running job's process, by job id."""
        ...

    def running_elsewhere(self) -> str | None:
        """A job running that the registry may not know of (what it is), or None."""
        ...


def job_command(job_id: str) -> list[str]:
    """The job process's arguments after the interpreter."""
    return ["-m", "yoloserve.retrain", "run", "--job-id", job_id]
