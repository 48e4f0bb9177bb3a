"""Retrain jobs as Kubernetes Jobs (``launchers.kubernetes``) through the one-job rules.

A fake API server (``httpx.MockTransport``) keeps the Job template's ConfigMap and the Jobs that
were created, filters lists by label selector as the API server does, and lets a test finish,
fail or delete a Job. The rules under test are those of ``yoloserve.retrain.jobs``: the launcher
only starts and reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import store_settings
from yoloserve.errors import KubernetesError, RetrainAlreadyRunning
from yoloserve.kube import KubeSettings
from yoloserve.modelserver.registry import Registry, utcnow
from yoloserve.retrain.jobs import active_job, reap_stale_jobs, start_job_process
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.kubernetes import KubernetesJobLauncher, job_manifest, job_name
from yoloserve.retrain.launchers.process import ProcessLauncher
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store

JOBS = "/apis/batch/v1/namespaces/ml/jobs"
CONFIG_MAP = "/api/v1/namespaces/ml/configmaps/yoloserve-trainer-job"
TEMPLATE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"app.kubernetes.io/part-of": "yoloserve"}},
    "spec": {
        "ttlSecondsAfterFinished": 86400,
        "template": {"spec": {
            "serviceAccountName": "yoloserve-trainer",
            "containers": [{
                "name": "trainer", "image": "yoloserve/trainer:template",
                "args": ["ignored"],
                "envFrom": [{"configMapRef": {"name": "yoloserve-retrain"}}],
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "volumeMounts": [{"name": "models", "mountPath": "/app/models"}],
            }],
            "volumes": [{"name": "models",
                         "persistentVolumeClaim": {"claimName": "yoloserve-models"}}],
        }},
    },
}


class FakeBatchApi:
    """ConfigMap ``yoloserve-trainer-job`` and the ``batch/v1`` Jobs of namespace ``ml``."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.template_text = yaml.safe_dump(TEMPLATE)
        self.create_status = 201
        self.reachable = True
        self.selectors: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.reachable:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.method == "GET" and path == CONFIG_MAP:
            return httpx.Response(200, json={"kind": "ConfigMap",
                                             "data": {"job.yaml": self.template_text}})
        if request.method == "GET" and path == JOBS:
            selector = request.url.params.get("labelSelector", "")
            self.selectors.append(selector)
            wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
            items = [job for job in self.jobs.values()
                     if wanted.items() <= job["metadata"]["labels"].items()]
            return httpx.Response(200, json={"kind": "JobList", "items": items})
        if request.method == "POST" and path == JOBS:
            if self.create_status != 201:
                return httpx.Response(self.create_status, json={
                    "kind": "Status", "message": "jobs.batch is forbidden: User cannot create"})
            job = json.loads(request.content)
            name = job["metadata"]["name"]
            if name in self.jobs:
                return httpx.Response(409, json={"message": f'jobs.batch "{name}" already exists'})
            job["status"] = {"active": 1}
            self.jobs[name] = job
            return httpx.Response(201, json=job)
        return httpx.Response(404, json={"message": f"{request.method} {path} not found"})

    def finish(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        self.jobs[name]["status"] = {"conditions": [
            {"type": kind, "status": "True", "reason": reason, "message": message}]}


@pytest.fixture
def api() -> FakeBatchApi:
    return FakeBatchApi()


@pytest.fixture
def k8s_settings(tmp_path: Path) -> RetrainSettings:
    return RetrainSettings(
        launcher="kubernetes", k8s_namespace="ml", k8s_image="registry.local/trainer:7",
        store=store_settings(tmp_path / "models"), run_dir=tmp_path / "run",
    )


@pytest.fixture
def registry(k8s_settings: RetrainSettings) -> Registry:
    return Registry(open_store(k8s_settings.store.url))


@pytest.fixture
def launcher(api: FakeBatchApi, k8s_settings: RetrainSettings) -> KubernetesJobLauncher:
    return KubernetesJobLauncher(k8s_settings, kube=KubeSettings(api_url="http://kube.test"),
                                 transport=httpx.MockTransport(api))


def start(settings: RetrainSettings, registry: Registry, launcher: KubernetesJobLauncher) -> str:
    return start_job_process(settings, trigger="api", registry=registry, launcher=launcher)


def test_the_job_is_created_from_the_template_with_labels_command_and_image(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    job_id = start(k8s_settings, registry, launcher)

    assert job_id == "r-0001"
    (job,) = api.jobs.values()
    labels = {"app.kubernetes.io/name": "yoloserve-trainer", "yoloserve/job-id": "r-0001"}
    assert job["metadata"]["name"] == "yoloserve-trainer-r-0001" == job_name(job_id)
    assert job["metadata"]["labels"] == {"app.kubernetes.io/part-of": "yoloserve", **labels}
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "python", "-m", "yoloserve.retrain", "run", "--job-id", "r-0001"]
    assert "args" not in container
    assert container["image"] == "registry.local/trainer:7"
    # What the template says about volumes, env, GPUs and the account stays as it was.
    assert container["envFrom"] == TEMPLATE["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert pod["serviceAccountName"] == "yoloserve-trainer"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    record = registry.get_job(job_id)
    assert record.state == "queued" and record.pid is None and record.trigger == "api"


def test_a_second_job_is_refused_while_one_is_active(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    first = start(k8s_settings, registry, launcher)
    with pytest.raises(RetrainAlreadyRunning, match=first):
        start(k8s_settings, registry, launcher)

    # The registry forgets the job (a restored backup, a hand edit): the active Job still counts.
    registry.update_job(first, state="succeeded", finished_at=utcnow())
    with pytest.raises(RetrainAlreadyRunning, match="Kubernetes Job yoloserve-trainer-r-0001"):
        start(k8s_settings, registry, launcher)
    assert [j.job_id for j in registry.load().jobs] == [first], "a refused start records nothing"
    assert "app.kubernetes.io/name=yoloserve-trainer" in api.selectors

    api.finish(job_name(first), "Complete")
    second = start(k8s_settings, registry, launcher)
    assert second == "r-0002" and len(api.jobs) == 2


def test_a_failed_job_is_reaped_as_failed(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    job_id = start(k8s_settings, registry, launcher)
    registry.update_job(job_id, state="running", started_at=utcnow(), pid=7)  # the pod's pid
    assert reap_stale_jobs(registry, launcher=launcher) == [], "active: alive"
    assert active_job(registry, launcher) is not None

    api.finish(job_name(job_id), "Failed", "BackoffLimitExceeded", "Job has reached the limit")
    assert reap_stale_jobs(registry, launcher=launcher) == [job_id]
    job = registry.get_job(job_id)
    assert job.state == "failed" and job.finished_at is not None
    assert "yoloserve-trainer-r-0001 failed" in (job.reason or "")
    assert "BackoffLimitExceeded" in (job.reason or "")
    assert active_job(registry, launcher) is None
    assert start(k8s_settings, registry, launcher) == "r-0002", "the failed Job blocks nothing"


def test_a_vanished_job_is_reaped_and_a_queued_one_gets_its_grace(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    running = start(k8s_settings, registry, launcher)
    registry.update_job(running, state="running", started_at=utcnow())
    del api.jobs[job_name(running)]  # kubectl delete job, or its TTL ran out
    queued = registry.record_job(state="queued", created_at=utcnow(), trigger="api").job_id

    assert reap_stale_jobs(registry, launcher=launcher) == [running]
    assert "no Kubernetes Job carries yoloserve/job-id=r-0001" in (
        registry.get_job(running).reason or "")
    assert registry.get_job(queued).state == "queued", "its Job may be being created"
    assert reap_stale_jobs(registry, launcher=launcher, queued_grace_s=0) == [queued]


def test_a_job_that_completed_without_finishing_is_reaped(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    job_id = start(k8s_settings, registry, launcher)
    registry.update_job(job_id, state="running", started_at=utcnow())
    api.finish(job_name(job_id), "Complete")
    assert reap_stale_jobs(registry, launcher=launcher) == [job_id]
    assert "completed without finishing" in (registry.get_job(job_id).reason or "")


def test_an_unreachable_api_reaps_nothing_and_starts_nothing(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    job_id = start(k8s_settings, registry, launcher)
    registry.update_job(job_id, state="running", started_at=utcnow())
    api.reachable = False
    assert reap_stale_jobs(registry, launcher=launcher, queued_grace_s=0) == []
    registry.update_job(job_id, state="failed")
    with pytest.raises(KubernetesError, match="ConnectError"):
        start(k8s_settings, registry, launcher)
    assert len(registry.load().jobs) == 1


def test_a_refused_create_records_the_job_as_failed(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    api.create_status = 403
    with pytest.raises(KubernetesError, match="forbidden") as caught:
        start(k8s_settings, registry, launcher)
    assert caught.value.status == 403
    (job,) = registry.load().jobs
    assert job.state == "failed" and "could not start the job process" in (job.reason or "")


@pytest.mark.parametrize(
    ("template", "image", "error"),
    [
        ({**TEMPLATE, "kind": "CronJob"}, None, "not a batch/v1 Job"),
        ({**TEMPLATE, "spec": {"template": {"spec": {"containers": []}}}}, "x", "no container"),
        ({**TEMPLATE, "spec": {"template": {"spec": {"containers": [{"name": "trainer"}]}}}},
         None, "no trainer image"),
        (TEMPLATE, None, None),
    ],
)
def test_job_manifest_checks_the_template(
    template: dict[str, Any], image: str | None, error: str | None
) -> None:
    if error is None:
        job = job_manifest(template, "r-0003", image)
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "yoloserve/trainer:template")
        assert "labels" not in TEMPLATE["spec"]["template"].get("metadata", {}), "not mutated"
        return
    with pytest.raises(KubernetesError, match=error):
        job_manifest(template, "r-0003", image)


def test_a_template_config_map_without_job_yaml_is_an_error(
    api: FakeBatchApi, k8s_settings: RetrainSettings, registry: Registry,
    launcher: KubernetesJobLauncher,
) -> None:
    api.template_text = ""
    with pytest.raises(KubernetesError, match="has no job.yaml"):
        start(k8s_settings, registry, launcher)


def test_the_launcher_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(launcher_from_settings(RetrainSettings()), ProcessLauncher)
    monkeypatch.setenv("RETRAIN_LAUNCHER", "kubernetes")
    monkeypatch.setenv("RETRAIN_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("RETRAIN_K8S_IMAGE", "registry.local/trainer:7")
    settings = RetrainSettings()
    chosen = launcher_from_settings(settings)
    assert isinstance(chosen, KubernetesJobLauncher)
    assert chosen.namespace == "ml" and settings.k8s_job_template == "yoloserve-trainer-job"
    # The job process started for it gets the same choice through its environment.
    assert settings.child_environment()["RETRAIN_LAUNCHER"] == "kubernetes"
