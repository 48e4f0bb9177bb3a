"""Every TorchServe replica behind one name is swapped: discovery by DNS, then a hot swap on
each replica's own management API (two scripted TorchServes here)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.fake_torchserve import HANDLER_ANSWER
from tests.yoloserve.controller.fake_management import FakeManagement
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.replicas import discover
from yoloserve.modelserver.rollout.base import DeploySettings, SwapOptions, run_sync
from yoloserve.modelserver.rollout.factory import deployer_from_settings
from yoloserve.store.engine import Store

ADDRESSES = ["10.0.0.12", "10.0.0.11"]


@pytest.fixture
def headless_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serving`` resolves to two pod addresses, as a headless Service does."""
    real = socket.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == "serving":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ADDRESSES]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.usefixtures("headless_service")
def test_a_name_with_several_addresses_is_one_replica_each() -> None:
    assert discover("http://serving:8085", "http://serving:8086") == [
        ("http://10.0.0.11:8085", "http://10.0.0.11:8086"),
        ("http://10.0.0.12:8085", "http://10.0.0.12:8086"),
    ]


def test_one_address_is_one_replica_as_given() -> None:
    assert discover("http://127.0.0.1:8085", "http://127.0.0.1:8086") == [
        ("http://127.0.0.1:8085", "http://127.0.0.1:8086")]
    assert discover("http://localhost:1", "http://localhost:2") == [
        ("http://localhost:1", "http://localhost:2")]


@pytest.mark.usefixtures("headless_service")
def test_an_activation_swaps_every_replica(tmp_path: Path) -> None:
    registry = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    for version in ("1", "2"):
        registry.add_version(sha256=version * 64, mar=f"yolo_v{version}.mar",
                             classes=["circle"], version=version)
    replicas = {a: FakeManagement(loaded=["1"], default="1") for a in ADDRESSES}

    def network(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/predictions/"):
            return httpx.Response(200, json=HANDLER_ANSWER)
        return replicas[request.url.host](request)

    swap = SwapOptions(management_url="http://serving:8086", inference_url="http://serving:8085",
                       drain_s=0.0, worker_timeout_s=2.0, lock_timeout_s=2.0)
    deployer = deployer_from_settings(DeploySettings(), registry, swap,
                                      transport=httpx.MockTransport(network))

    record = run_sync(deployer.activate("2"))

    assert record.status == "serving" and registry.load().default_version == "2"
    for fake in replicas.values():
        assert fake.default == "2" and fake.loaded == ["2"]
