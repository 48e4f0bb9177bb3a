"""``RETRAIN_LAUNCHER=pipeline``: the retrain job as a Kubeflow Pipelines run.

The pipeline (``yoloserve.retrain.pipeline``) is compiled at submit time and started through the KFP
client with the job id as its parameter; the run's state is the job's liveness, so the one-job rule
and the reaping of ``yoloserve.retrain.jobs`` treat it like a job process or a Kubernetes Job.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yoloserve.errors import KubernetesError
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.launchers.base import ALIVE, Liveness
from yoloserve.retrain.settings import RetrainSettings

logger = logging.getLogger("yoloserve.retrain")

RUN_PREFIX = "yoloserve-retrain-"
KFP_ACTIVE = ("PENDING", "RUNNING", "PAUSED", "CANCELING", "RUNTIME_STATE_UNSPECIFIED")


def run_name(job_id: str) -> str:
    """The KFP run's display name for job ``job_id``."""
    return f"{RUN_PREFIX}{job_id}"


def _run_state(run: Any) -> str:
    return str(getattr(run, "state", None) or "RUNTIME_STATE_UNSPECIFIED").upper()


def _run_error(run: Any) -> str:
    error = getattr(run, "error", None)
    return str(getattr(error, "message", None) or "") if error is not None else ""


class PipelineLauncher:
    """The job as a Kubeflow Pipelines run (see the module docstring).

    Args:
        settings: ``RETRAIN_KFP_*`` and ``RETRAIN_PIPELINE_*``.
        client_factory: builds the KFP client (tests pass a fake); ``kfp.Client`` when None.
    """

    kind = "pipeline"

    def __init__(
        self, settings: RetrainSettings, *, client_factory: Callable[[], Any] | None = None
    ) -> None:
        self.settings = settings
        self._factory = client_factory

    def _client(self) -> Any:
        if self._factory is not None:
            return self._factory()
        import kfp  # the `pipelines` extra, only when this launcher is picked

        try:
            return kfp.Client(host=self.settings.kfp_host, namespace=self.namespace)
        except Exception as exc:  # kfp raises whatever its HTTP stack raised
            raise KubernetesError(f"Kubeflow Pipelines API unreachable: {exc}") from exc

    @property
    def namespace(self) -> str:
        return self.settings.kfp_namespace or "kubeflow"

    def _our_runs(self) -> list[Any]:
        client = self._client()
        try:
            answer = client.list_runs(page_size=100, sort_by="created_at desc",
                                      namespace=self.settings.kfp_namespace)
        except Exception as exc:
            raise KubernetesError(f"Kubeflow Pipelines: cannot list runs: {exc}") from exc
        return [r for r in (getattr(answer, "runs", None) or [])
                if str(getattr(r, "display_name", "")).startswith(RUN_PREFIX)]

    def start(self, job_id: str, settings: RetrainSettings, registry: Registry) -> dict[str, Any]:
        # The pipeline's definition imports kfp (the `pipelines` extra): only when it is launched.
        from yoloserve.retrain.pipeline import compile_pipeline

        client = self._client()
        with tempfile.TemporaryDirectory(prefix="retrain-pipeline-") as tmp:
            spec = compile_pipeline(Path(tmp) / "retrain-pipeline.yaml", self.settings)
            try:
                result = client.create_run_from_pipeline_package(
                    str(spec), arguments={"job_id": job_id}, run_name=run_name(job_id),
                    experiment_name=self.settings.kfp_experiment,
                    namespace=self.settings.kfp_namespace,
                )
            except Exception as exc:
                raise KubernetesError(f"Kubeflow Pipelines refused the run: {exc}") from exc
        logger.info("retrain job %s started as KFP run %s", job_id,
                    getattr(result, "run_id", "?"))
        return {}

    def liveness(self, jobs: Sequence[RetrainJob]) -> dict[str, Liveness]:
        try:
            runs = self._our_runs()
        except KubernetesError as exc:
            logger.warning("cannot list pipeline runs (%s): every job counts as alive", exc)
            return {job.job_id: ALIVE for job in jobs}
        by_name: dict[str, Any] = {}
        for run in runs:  # newest first: a retried submission's latest run wins
            by_name.setdefault(str(run.display_name), run)
        out = {}
        for job in jobs:
            run = by_name.get(run_name(job.job_id))
            if run is None:
                gone = f"no Kubeflow Pipelines run is named {run_name(job.job_id)}"
                out[job.job_id] = Liveness("unstarted" if job.state == "queued" else "dead", gone)
                continue
            state = _run_state(run)
            if state in KFP_ACTIVE:
                out[job.job_id] = ALIVE
                continue
            error = _run_error(run)
            out[job.job_id] = Liveness(
                "dead", f"its pipeline run {getattr(run, 'run_id', '?')} ended {state} without "
                        "finishing the job" + (f" ({error})" if error else ""))
        return out

    def running_elsewhere(self) -> str | None:
        for run in self._our_runs():
            if _run_state(run) in KFP_ACTIVE:
                return (f"Kubeflow Pipelines run {run.display_name} "
                        f"({getattr(run, 'run_id', '?')}) is {_run_state(run).lower()}")
        return None


