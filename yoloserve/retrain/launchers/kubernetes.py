"""``RETRAIN_LAUNCHER=kubernetes``: the job as a ``batch/v1`` Job built from a template.

The Job comes from the ``job.yaml`` key of ConfigMap ``RETRAIN_K8S_JOB_TEMPLATE`` in
``RETRAIN_K8S_NAMESPACE`` (the trainer's volumes, env, GPU requests live there): named
``yoloserve-trainer-<id>``, labelled ``app.kubernetes.io/name=yoloserve-trainer`` and
``yoloserve/job-id=<id>``, image ``RETRAIN_K8S_IMAGE`` (or the template's), command
``python -m yoloserve.retrain run --job-id <id>``. A job is alive while a Job with its label is
neither complete nor failed; any unfinished trainer Job, recorded or not, counts as the one job
that may run. An unreachable API reads as alive (nothing is reaped on a guess) and refuses a
start (nothing is started blind).

Example:
    >>> job_name("r-0007")
    'yoloserve-trainer-r-0007'
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx
import yaml

from yoloserve.errors import KubernetesError
from yoloserve.kube import KubeClient, KubeSettings, resource_path
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.launchers.base import ALIVE, Liveness, job_command
from yoloserve.retrain.settings import RetrainSettings

logger = logging.getLogger("yoloserve.retrain")

APP_LABEL = "app.kubernetes.io/name"
APP = "yoloserve-trainer"
JOB_ID_LABEL = "yoloserve/job-id"
TEMPLATE_KEY = "job.yaml"
CONTAINER = "trainer"


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
