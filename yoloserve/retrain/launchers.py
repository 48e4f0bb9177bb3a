"""Where a retrain job runs: a local process, the trainer service, a Kubernetes Job or a KFP run.

A launcher only starts a job and says whether it still lives; the rules (the retrain lock, one
job at a time, marking dead jobs failed) stay in ``yoloserve.retrain.jobs``.

- ``process`` (default): ``python -m yoloserve.retrain run --job-id ID`` in its own session, its
  pid recorded in the job; alive while that pid runs a retrain process.
- ``queue``: nothing is started; the job stays ``queued`` until the trainer service
  (``python -m yoloserve.retrain trainer``, ``yoloserve.retrain.trainer``) claims it. Liveness
  comes from the trainers' heartbeat files in the run dir (``yoloserve.retrain.heartbeat``), since
  the gateway and the trainer share only volumes, not a PID namespace: a queued job waits while
  some trainer beats, and is ``unstarted`` (reaped after the start grace) while none does; a
  running job lives while the fresh beat of its trainer names it.
- ``kubernetes``: a ``batch/v1`` Job in ``RETRAIN_K8S_NAMESPACE``, built from the ``job.yaml`` key
  of ConfigMap ``RETRAIN_K8S_JOB_TEMPLATE`` (the trainer's volumes, env, GPU requests live there):
  named ``yoloserve-trainer-<id>``, labelled ``app.kubernetes.io/name=yoloserve-trainer`` and
  ``yoloserve/job-id=<id>``, image ``RETRAIN_K8S_IMAGE`` (or the template's), command
  ``python -m yoloserve.retrain run --job-id <id>``. A job is alive while a Job with its label
  is neither complete nor failed; any unfinished trainer Job, recorded or not, counts as the one
  job that may run. An unreachable API reads as alive (nothing is reaped on a guess) and refuses
  a start (nothing is started blind).
- ``pipeline``: a Kubeflow Pipelines run of ``yoloserve.retrain.pipeline`` (compiled on the spot
  with this process's ``RETRAIN_PIPELINE_*``), submitted through
  ``kfp.Client(host=RETRAIN_KFP_HOST)`` in experiment ``RETRAIN_KFP_EXPERIMENT``, named
  ``yoloserve-retrain-<id>``, the job id as its ``job_id`` parameter. Alive while that run is
  pending, running, paused or canceling; dead with the run's error once it ended without
  finishing the job. Any unfinished run of ours counts as the one job that may run; an
  unreachable API reads and refuses as for ``kubernetes``.

Example:
    >>> job_name("r-0007")
    'yoloserve-trainer-r-0007'
"""

from __future__ import annotations

import copy
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import psutil
import yaml

from yoloserve import paths
from yoloserve.errors import KubernetesError
from yoloserve.kube import KubeClient, KubeSettings, resource_path
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.heartbeat import is_fresh, read_heartbeats, stale_after_s
from yoloserve.retrain.settings import RetrainSettings, job_log

logger = logging.getLogger("yoloserve.retrain")

APP_LABEL = "app.kubernetes.io/name"
APP = "yoloserve-trainer"
JOB_ID_LABEL = "yoloserve/job-id"
TEMPLATE_KEY = "job.yaml"
CONTAINER = "trainer"


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


# ------------------------------------------------------------------------ local process


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


# ------------------------------------------------------------------------ the trainer service

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


# ------------------------------------------------------------------------ Kubernetes Job


def job_name(job_id: str) -> str:
    """The Job's name: a DNS-1123 label built from the job id."""
    safe = re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-")
    return f"{APP}-{safe}"[:63].rstrip("-")


def job_manifest(template: dict[str, Any], job_id: str, image: str | None) -> dict[str, Any]:
    """The Job for ``job_id`` from the template: name, labels, image, command.

    Raises:
        KubernetesError: the template is not a ``batch/v1`` Job with a container and an image.
    """
    if template.get("apiVersion") != "batch/v1" or template.get("kind") != "Job":
        raise KubernetesError(f"the Job template ({TEMPLATE_KEY}) is not a batch/v1 Job")
    job = copy.deepcopy(template)
    labels = {APP_LABEL: APP, JOB_ID_LABEL: job_id}
    meta = job.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = job_name(job_id)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    spec = job.setdefault("spec", {})
    spec.setdefault("backoffLimit", 0)  # a retried pod would find its job no longer queued
    pod_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    pod = spec["template"].setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    containers = pod.get("containers") or []
    if not containers:
        raise KubernetesError(f"the Job template ({TEMPLATE_KEY}) has no container")
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0])
    container["command"] = ["python", *job_command(job_id)]
    container.pop("args", None)
    if image:
        container["image"] = image
    if not container.get("image"):
        raise KubernetesError("no trainer image: set RETRAIN_K8S_IMAGE or the template's image")
    return job


def _finished(job: dict[str, Any]) -> tuple[str, str] | None:
    """``(condition, why)`` of a finished (or failing) Job; None while it may still run."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in (
            "Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"
        ):
            why = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
            return str(condition["type"]), why
    return None


class KubernetesJobLauncher:
    """The job as a ``batch/v1`` Job (see the module docstring).

    Args:
        settings: ``RETRAIN_K8S_*`` (namespace, template ConfigMap, image).
        kube: where the Kubernetes API is; ``KUBE_*`` when None.
        transport: replaces the network (tests pass an ``httpx.MockTransport``).
    """

    kind = "kubernetes"

    def __init__(
        self,
        settings: RetrainSettings,
        *,
        kube: KubeSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube or KubeSettings()
        self._transport = transport

    @property
    def namespace(self) -> str:
        return self.settings.k8s_namespace or self.kube.default_namespace()

    def _client(self) -> KubeClient:
        return KubeClient(self.kube, self._transport)

    def _jobs_path(self) -> str:
        return resource_path("batch/v1", "jobs", self.namespace)

    def _trainer_jobs(self, kube: KubeClient) -> list[dict[str, Any]]:
        return kube.list_items(self._jobs_path(), label_selector=f"{APP_LABEL}={APP}")

    def _template(self, kube: KubeClient) -> dict[str, Any]:
        name = self.settings.k8s_job_template
        config_map = kube.get(resource_path("v1", "configmaps", self.namespace, name))
        text = (config_map.get("data") or {}).get(TEMPLATE_KEY)
        if not text:
            raise KubernetesError(f"ConfigMap {self.namespace}/{name} has no {TEMPLATE_KEY}")
        try:
            template = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KubernetesError(f"ConfigMap {name}: {TEMPLATE_KEY} is not YAML: {exc}") from exc
        if not isinstance(template, dict):
            raise KubernetesError(f"ConfigMap {name}: {TEMPLATE_KEY} is not a manifest")
        return template

    def start(self, job_id: str, settings: RetrainSettings, registry: Registry) -> dict[str, Any]:
        with self._client() as kube:
            body = job_manifest(self._template(kube), job_id, self.settings.k8s_image)
            created = kube.create(self._jobs_path(), body)
        name = created.get("metadata", {}).get("name", body["metadata"]["name"])
        logger.info("retrain job %s started as Kubernetes Job %s/%s", job_id, self.namespace, name)
        return {}

    def liveness(self, jobs: Sequence[RetrainJob]) -> dict[str, Liveness]:
        try:
            with self._client() as kube:
                found = self._trainer_jobs(kube)
        except KubernetesError as exc:
            logger.warning("cannot list trainer Jobs (%s): every job counts as alive", exc)
            return {job.job_id: ALIVE for job in jobs}
        by_id = {
            (item.get("metadata", {}).get("labels") or {}).get(JOB_ID_LABEL): item
            for item in found
        }
        out = {}
        for job in jobs:
            item = by_id.get(job.job_id)
            if item is None:
                gone = f"no Kubernetes Job carries {JOB_ID_LABEL}={job.job_id}"
                # Queued: its Job may be being created; the start grace applies.
                out[job.job_id] = Liveness("unstarted" if job.state == "queued" else "dead", gone)
                continue
            finished = _finished(item)
            if finished is None:
                out[job.job_id] = ALIVE
                continue
            condition, why = finished
            name = item.get("metadata", {}).get("name")
            verdict = "failed" if condition in ("Failed", "FailureTarget") else "completed"
            out[job.job_id] = Liveness("dead", f"its Kubernetes Job {name} {verdict} without "
                                               f"finishing the job" + (f" ({why})" if why else ""))
        return out

    def running_elsewhere(self) -> str | None:
        with self._client() as kube:
            for item in self._trainer_jobs(kube):
                if _finished(item) is None:
                    meta = item.get("metadata", {})
                    job_id = (meta.get("labels") or {}).get(JOB_ID_LABEL, "?")
                    return f"Kubernetes Job {meta.get('name')} (retrain job {job_id}) is active"
        return None


def launcher_from_settings(
    settings: RetrainSettings,
    *,
    kube: KubeSettings | None = None,
    transport: httpx.BaseTransport | None = None,
) -> JobLauncher:
    """The launcher ``RETRAIN_LAUNCHER`` names (``transport``: the Kubernetes API's, in tests)."""
    if settings.launcher == "kubernetes":
        return KubernetesJobLauncher(settings, kube=kube, transport=transport)
    if settings.launcher == "pipeline":
        # Its own module: kfp is imported only when a pipeline run is launched.
        from yoloserve.retrain.pipeline_launcher import PipelineLauncher

        return PipelineLauncher(settings)
    if settings.launcher == "queue":
        return QueueLauncher(settings)
    return ProcessLauncher()
