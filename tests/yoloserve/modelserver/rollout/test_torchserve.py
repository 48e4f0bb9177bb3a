"""``yoloserve.modelserver.rollout``: the TorchServe wrapper, and the pick by ``DEPLOY_*``.

The TorchServe deployer runs against the fake management API of ``test_deploy.py`` (state and a
call log), so the wrapper is held to exactly the calls the hot swap makes there.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.yoloserve.modelserver.test_deploy import CLASSES, MGMT, FakeManagement
from yoloserve import errors as e
from yoloserve.modelserver.deploy import WARMUP_REQUESTS
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.rollout.base import DeploySettings, SwapOptions, run_sync
from yoloserve.modelserver.rollout.factory import deployer_from_settings
from yoloserve.modelserver.rollout.kserve import KServeDeployer
from yoloserve.modelserver.rollout.torchserve import TorchServeDeployer
from yoloserve.store.engine import Store


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    for n in ("1", "2", "3"):
        reg.add_version(sha256=n * 64, mar=f"yolo_v{n}.mar", classes=CLASSES)
    reg.set_status("3", "rejected")
    return reg


def torchserve(fake: FakeManagement, registry: Registry) -> TorchServeDeployer:
    deployer = deployer_from_settings(
        DeploySettings(), registry, SwapOptions(management_url=MGMT, drain_s=0),
        transport=httpx.MockTransport(fake),
    )
    assert isinstance(deployer, TorchServeDeployer)
    return deployer


def test_the_backend_follows_the_settings(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DeploySettings().backend == "torchserve"
    assert deployer_from_settings(DeploySettings(), registry).backend == "torchserve"
    monkeypatch.setenv("DEPLOY_BACKEND", "kserve")
    monkeypatch.setenv("DEPLOY_KSERVE_NAMESPACE", "ml")
    monkeypatch.setenv("DEPLOY_CANARY_PERCENT", "25")
    settings = DeploySettings()
    chosen = deployer_from_settings(settings, registry)
    assert isinstance(chosen, KServeDeployer) and chosen.backend == "kserve"
    assert chosen.path == "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/yolo"
    assert settings.canary_percent == 25 and settings.prometheus_url is None
    monkeypatch.setenv("DEPLOY_BACKEND", "docker")
    with pytest.raises(ValueError, match="torchserve"):
        DeploySettings()


def test_torchserve_deploy_is_the_hot_swap(registry: Registry) -> None:
    fake = FakeManagement({"1": True}, default="1")
    result = run_sync(torchserve(fake, registry).deploy("2"))

    assert result.promoted and result.backend == "torchserve" and result.previous == "1"
    assert fake.calls == ["register 2", "describe 2", *["probe 2"] * WARMUP_REQUESTS,
                          "set-default 2", "probe 1", "unregister 1"]
    assert registry.load().default_version == "2"


def test_torchserve_activate_is_the_rollback(registry: Registry) -> None:
    fake = FakeManagement({"2": True}, default="2")
    registry.set_default("2")
    record = run_sync(torchserve(fake, registry).activate("1"))
    assert record.version == "1" and record.status == "serving"
    assert fake.default == "1" and set(fake.loaded) == {"1"}


def test_torchserve_failures_raise_as_before(registry: Registry) -> None:
    fake = FakeManagement({"1": True}, default="1")
    fake.ready_after_register = False
    deployer = torchserve(fake, registry)
    deployer.options = SwapOptions(management_url=MGMT, drain_s=0, worker_timeout_s=0.1)
    with pytest.raises(e.ModelNotReady):
        run_sync(deployer.deploy("2"))
    with pytest.raises(e.VersionRejected):
        run_sync(deployer.activate("3"))
    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert registry.load().default_version == "1"


async def test_run_sync_refuses_a_running_loop(registry: Registry) -> None:
    fake = FakeManagement({"1": True}, default="1")
    with pytest.raises(RuntimeError, match="inside an event loop"):
        run_sync(torchserve(fake, registry).deploy("2"))
    assert fake.calls == []
