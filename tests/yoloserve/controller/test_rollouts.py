"""The controller carries activation intents out: a hot swap through a scripted TorchServe
management API, or, with ``DEPLOY_BACKEND=kserve``, a patch of a fake cluster's
InferenceService; the outcome is recorded on the job."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.gateway.fake_torchserve import HANDLER_ANSWER
from tests.yoloserve.controller.fake_management import FakeManagement
from tests.yoloserve.modelserver.rollout.test_kserve import ROOT as KSERVE_ROOT
from tests.yoloserve.modelserver.rollout.test_kserve import FakeCluster
from yoloserve.controller.rollouts import RolloutWorker
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.rollout.base import DeploySettings, SwapOptions
from yoloserve.modelserver.rollout.factory import deployer_from_settings
from yoloserve.store.engine import Store

CLASSES = ["circle", "square", "triangle"]
SWAP = SwapOptions(management_url="http://ts:8086", inference_url="http://ts:8085",
                   drain_s=0.0, worker_timeout_s=2.0, lock_timeout_s=2.0)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Version 1 serving, version 2 ready (a rollback target)."""
    registry = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    for version in ("1", "2"):
        registry.add_version(sha256=version * 64, mar=f"yolo_v{version}.mar", classes=CLASSES,
                             version=version)
    return registry


def torchserve_worker(registry: Registry, management: FakeManagement) -> RolloutWorker:
    def network(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/predictions/"):  # the swap's warm-up predictions
            return httpx.Response(200, json=HANDLER_ANSWER)
        return management(request)

    deployer = deployer_from_settings(DeploySettings(), registry, SWAP,
                                      transport=httpx.MockTransport(network))
    return RolloutWorker(registry, deployer)


def test_a_queued_activation_is_swapped_in_and_recorded(registry: Registry) -> None:
    management = FakeManagement(loaded=["1"], default="1")
    worker = torchserve_worker(registry, management)
    job = registry.request_activation("2")

    done = worker.step()

    assert done is not None and done.job_id == job.job_id
    assert (done.state, done.reason) == ("succeeded", "version 2 serves")
    assert done.started_at is not None and done.finished_at is not None
    assert registry.load().default_version == "2"
    calls = management.calls
    # The new version was loaded and made default before the old one was unloaded.
    assert calls.index("POST /models") < calls.index("PUT /models/yolo/2/set-default")
    assert calls.index("PUT /models/yolo/2/set-default") < calls.index("DELETE /models/yolo/1")
    assert management.loaded == ["2"] and management.default == "2"
    assert worker.step() is None, "nothing queued any more"


def test_a_failed_load_is_recorded_and_the_old_version_keeps_serving(registry: Registry) -> None:
    management = FakeManagement(loaded=["1"], default="1")
    management.register_status = 500
    worker = torchserve_worker(registry, management)
    registry.request_activation("2")

    done = worker.step()

    assert done is not None and done.state == "failed"
    assert done.reason and done.reason.startswith("model_server_error")
    assert registry.load().default_version == "1"
    assert management.default == "1" and management.loaded == ["1"]


def test_activations_run_in_the_order_they_were_asked(registry: Registry) -> None:
    management = FakeManagement(loaded=["1"], default="1")
    worker = torchserve_worker(registry, management)
    first, second = registry.request_activation("2"), registry.request_activation("1")

    assert worker.step().job_id == first.job_id  # type: ignore[union-attr]
    assert worker.step().job_id == second.job_id  # type: ignore[union-attr]
    assert registry.load().default_version == "1" and management.default == "1"


def test_two_workers_never_run_one_activation_twice(registry: Registry) -> None:
    management = FakeManagement(loaded=["1"], default="1")
    workers = [torchserve_worker(registry, management) for _ in range(4)]
    registry.request_activation("2")
    barrier = threading.Barrier(len(workers))
    ran: list[str] = []

    def run(worker: RolloutWorker) -> None:
        barrier.wait()
        if (done := worker.step()) is not None:
            ran.append(done.job_id)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ran == ["a-0001"]
    assert management.calls.count("POST /models") == 1


def test_an_activation_a_dead_controller_left_running_is_failed(registry: Registry) -> None:
    worker = torchserve_worker(registry, FakeManagement(loaded=["1"], default="1"))
    job = registry.request_activation("2")
    registry.update_job(job.job_id, state="running")

    assert worker.fail_orphans() == [job.job_id]
    record = registry.get_job(job.job_id)
    assert record.state == "failed" and record.reason and "previous version" in record.reason


def test_with_kserve_an_activation_moves_the_inference_service(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBE_API_URL", "http://kube.test")
    cluster = FakeCluster(f"{KSERVE_ROOT}/v1")
    deploy = DeploySettings(backend="kserve", kserve_namespace="ml",
                            kserve_storage_root=KSERVE_ROOT, kserve_layout_dir=None,
                            ready_timeout_s=2.0, poll_s=0.01)
    deployer = deployer_from_settings(deploy, registry, transport=httpx.MockTransport(cluster))
    worker = RolloutWorker(registry, deployer)

    registry.request_activation("2")
    assert worker.step().state == "succeeded"  # type: ignore[union-attr]
    registry.request_activation("2")  # already serving: no second patch
    assert worker.step().state == "succeeded"  # type: ignore[union-attr]

    assert cluster.serving_uri() == f"{KSERVE_ROOT}/v2" and len(cluster.patches) == 1
    assert registry.load().default_version == "2"


def test_with_kserve_an_api_failure_fails_the_job(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBE_API_URL", "http://kube.test")
    cluster = FakeCluster(f"{KSERVE_ROOT}/v1")
    deploy = DeploySettings(backend="kserve", kserve_namespace="ml", kserve_name="absent",
                            kserve_storage_root=KSERVE_ROOT, kserve_layout_dir=None,
                            ready_timeout_s=2.0, poll_s=0.01)
    deployer = deployer_from_settings(deploy, registry, transport=httpx.MockTransport(cluster))
    registry.request_activation("2")

    done = RolloutWorker(registry, deployer).step()

    assert done is not None and done.state == "failed"
    assert done.reason and done.reason.startswith("kubernetes_error")
    assert registry.load().default_version == "1"
