"""``yoloserve.modelserver.deploy`` against a fake TorchServe management API (MockTransport).

The fake keeps real state (registered versions, their workers, the default) and refuses what
TorchServe refuses, so the tests check the order of calls and what each failure leaves behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from yoloserve import errors as e
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.deploy import (
    SWAP_LEASE_NAME,
    WARMUP_REQUESTS,
    activate,
    hot_swap,
    hot_swap_sync,
)
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store
from yoloserve.store.lease import StoreLease

MGMT = "http://ts:8086"
CLASSES = ["circle", "square", "triangle"]


class FakeManagement:
    """Just enough of TorchServe's management API for swaps, with state and a call log."""

    def __init__(self, loaded: dict[str, bool], default: str | None) -> None:
        self.loaded = dict(loaded)  # version -> has a READY worker
        self.default = default
        self.calls: list[str] = []
        self.ready_after_register = True
        self.fail: dict[str, int] = {}  # call ("probe 1") or its name ("probe") -> status
        self.register_params: dict[str, str] = {}

    def _describe(self, version: str) -> dict[str, object]:
        workers = [{"id": "9000", "status": "READY" if self.loaded[version] else "UNLOADING"}]
        return {"modelName": "yolo", "modelVersion": version, "workers": workers}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if request.method == "POST" and parts == ["models"]:
            version = request.url.params["url"].removeprefix("yolo_v").removesuffix(".mar")
            self.register_params = dict(request.url.params)
            return self._answer(f"register {version}", lambda: self._register(version))
        if request.method == "POST" and parts[:2] == ["predictions", "yolo"] and len(parts) == 3:
            return self._answer(f"probe {parts[2]}", lambda: self._predict(parts[2]))
        if request.method == "GET" and parts[:2] == ["models", "yolo"]:
            return self._get(parts[2] if len(parts) > 2 else None)
        if request.method == "PUT" and len(parts) == 4 and parts[3] == "set-default":
            return self._answer(f"set-default {parts[2]}", lambda: self._set_default(parts[2]))
        if request.method == "DELETE" and len(parts) == 3:
            return self._answer(f"unregister {parts[2]}", lambda: self._unregister(parts[2]))
        return httpx.Response(400, json={"message": f"unexpected {request.method} {parts}"})

    def _answer(self, call: str, act: Callable[[], httpx.Response]) -> httpx.Response:
        self.calls.append(call)
        name = call if call in self.fail else call.split()[0]
        if name in self.fail:
            return httpx.Response(self.fail[name], json={"message": f"{name} failed on purpose"})
        return act()

    def _get(self, version: str | None) -> httpx.Response:
        if version == "all":
            if not self.loaded:
                return httpx.Response(404, json={"message": "Model not found: yolo"})
            return httpx.Response(200, json=[self._describe(v) for v in self.loaded])
        if version is not None:  # asking for the default version is not a worker check
            self.calls.append(f"describe {version}")
        version = version or self.default
        if version not in self.loaded:
            return httpx.Response(404, json={"message": f"Model version not found: {version}"})
        return httpx.Response(200, json=[self._describe(version)])

    def _predict(self, version: str) -> httpx.Response:
        if version not in self.loaded:
            return httpx.Response(404, json={"message": f"Model version not found: {version}"})
        return httpx.Response(200, json={"model": {"name": "yolo", "version": version},
                                         "image": {"width": 64, "height": 64}, "boxes": [],
                                         "timing_ms": {"total": 1.0, "model": 1.0}})

    def _register(self, version: str) -> httpx.Response:
        if version in self.loaded:
            return httpx.Response(409, json={"message": f"Model version {version} exists"})
        self.loaded[version] = self.ready_after_register
        return httpx.Response(200, json={"status": f"Model yolo Version: {version} registered"})

    def _set_default(self, version: str) -> httpx.Response:
        if version not in self.loaded:
            return httpx.Response(404, json={"message": f"Model version not found: {version}"})
        self.default = version
        return httpx.Response(200, json={"status": "Default version updated"})

    def _unregister(self, version: str) -> httpx.Response:
        if version not in self.loaded:
            return httpx.Response(404, json={"message": f"Model version not found: {version}"})
        if version == self.default and len(self.loaded) > 1:
            return httpx.Response(400, json={"message": "Cannot remove default version"})
        del self.loaded[version]
        return httpx.Response(200, json={"status": f"Model yolo version {version} unregistered"})


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    for n in ("1", "2", "3"):
        reg.add_version(sha256=n * 64, mar=f"yolo_v{n}.mar", classes=CLASSES)
    reg.set_status("3", "rejected")
    return reg


@pytest.fixture
def fake() -> FakeManagement:
    return FakeManagement({"1": True}, default="1")


@pytest.fixture
async def client(fake: FakeManagement) -> AsyncIterator[TorchServeClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        yield TorchServeClient(http, "http://ts:8085", MGMT, "yolo")


async def test_swap_registers_waits_sets_default_then_unregisters_old(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    await hot_swap(client, registry, "2", drain_s=0)

    assert fake.calls == ["register 2", "describe 2", *["probe 2"] * WARMUP_REQUESTS,
                          "set-default 2", "probe 1", "unregister 1"]
    # Registered without waiting: a synchronous register blocks one of TorchServe's I/O threads.
    assert fake.register_params["synchronous"] == "false"
    assert fake.default == "2" and set(fake.loaded) == {"2"}
    data = registry.load()
    assert data.default_version == "2"
    assert {v.version: v.status for v in data.versions} == {
        "1": "ready", "2": "serving", "3": "rejected"
    }


async def test_swap_waits_for_a_worker_that_comes_up_late(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.ready_after_register = False

    async def worker_comes_up() -> None:
        await asyncio.sleep(0.7)
        fake.loaded["2"] = True

    task = asyncio.create_task(worker_comes_up())
    await hot_swap(client, registry, "2", drain_s=0, worker_timeout_s=10)
    await task
    checks = [c for c in fake.calls if c == "describe 2"]
    assert len(checks) >= 2, "it polled until the worker was READY"
    assert fake.calls.index("set-default 2") > fake.calls.index(checks[-1])
    assert registry.load().default_version == "2"


async def test_no_live_worker_rolls_back(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.ready_after_register = False
    with pytest.raises(e.ModelNotReady, match="no READY worker"):
        await hot_swap(client, registry, "2", drain_s=0, worker_timeout_s=0.6)

    assert "set-default 2" not in fake.calls
    assert fake.calls[-1] == "unregister 2"
    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert registry.load().default_version == "1"
    assert registry.get("2").status == "ready"


@pytest.mark.parametrize(
    ("failing", "status", "error"),
    [
        ("register", 500, e.ModelServerError),
        ("register", 503, e.ModelServerUnavailable),
        ("set-default", 500, e.ModelServerError),
    ],
)
async def test_failure_before_set_default_keeps_old_version(
    client: TorchServeClient,
    fake: FakeManagement,
    registry: Registry,
    failing: str,
    status: int,
    error: type[Exception],
) -> None:
    fake.fail[failing] = status
    with pytest.raises(error):
        await hot_swap(client, registry, "2", drain_s=0)

    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert "unregister 1" not in fake.calls
    assert registry.load().default_version == "1"


async def test_registry_failure_puts_torchserve_default_back(
    client: TorchServeClient,
    fake: FakeManagement,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(version: str) -> None:
        raise e.RegistryError("disk full")

    monkeypatch.setattr(registry, "set_default", broken)
    with pytest.raises(e.RegistryError, match="disk full"):
        await hot_swap(client, registry, "2", drain_s=0)

    assert fake.calls == [
        "register 2", "describe 2", *["probe 2"] * WARMUP_REQUESTS, "set-default 2",
        "set-default 1", "unregister 2",
    ]
    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert registry.load().default_version == "1"


async def test_already_registered_version_is_swapped_to_and_kept_on_failure(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.loaded["2"] = True  # e.g. loaded by hand before
    fake.fail["set-default"] = 500
    with pytest.raises(e.ModelServerError):
        await hot_swap(client, registry, "2", drain_s=0)
    assert "register 2" not in fake.calls
    assert set(fake.loaded) == {"1", "2"}, "a version this swap did not load is not unloaded"

    del fake.fail["set-default"]
    await hot_swap(client, registry, "2", drain_s=0)
    assert fake.default == "2" and set(fake.loaded) == {"2"}


async def test_register_conflict_from_a_racing_loader_is_fine(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    original = fake._register

    def raced(version: str) -> httpx.Response:
        original(version)  # somebody else registered it just before us
        return httpx.Response(409, json={"message": f"Model version {version} exists"})

    fake._register = raced  # type: ignore[method-assign]
    await hot_swap(client, registry, "2", drain_s=0)
    assert fake.default == "2" and registry.load().default_version == "2"


async def test_unregister_failures_of_old_versions_do_not_fail_the_swap(
    client: TorchServeClient,
    fake: FakeManagement,
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.fail["unregister"] = 500
    with caplog.at_level(logging.WARNING, logger="yoloserve.modelserver.deploy"):
        await hot_swap(client, registry, "2", drain_s=0)
    assert fake.default == "2" and registry.load().default_version == "2"
    assert "unregistering old version 1 failed" in caplog.text


async def test_drain_happens_between_set_default_and_unregister(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await hot_swap(client, registry, "2", drain_s=0.5)
    assert loop.time() - start >= 0.5
    assert fake.calls.index("set-default 2") < fake.calls.index("unregister 1")


async def test_old_version_is_unregistered_after_a_pinned_probe_answers(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    # The probe queues behind what was routed to version 1: its answer means they all are done.
    await hot_swap(client, registry, "2", drain_s=0)
    assert fake.calls.index("set-default 2") < fake.calls.index("probe 1")
    assert fake.calls.index("probe 1") == fake.calls.index("unregister 1") - 1


async def test_a_failing_probe_does_not_keep_the_old_version(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.fail["probe 1"] = 503  # the drain barrier on the old version
    await hot_swap(client, registry, "2", drain_s=0)
    assert set(fake.loaded) == {"2"}


async def test_activate_rolls_back_and_returns_the_record(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    await hot_swap(client, registry, "2", drain_s=0)
    record = await activate(client, registry, "1", drain_s=0)
    assert record.version == "1" and record.status == "serving"
    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert registry.get("2").status == "ready"


@pytest.mark.parametrize(
    ("version", "error"), [("3", e.VersionRejected), ("9", e.UnknownVersion)]
)
async def test_activate_refuses_rejected_and_unknown_versions(
    client: TorchServeClient,
    fake: FakeManagement,
    registry: Registry,
    version: str,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await activate(client, registry, version, drain_s=0)
    assert fake.calls == [], "refused before touching TorchServe"
    assert registry.load().default_version == "1"


async def test_a_second_swap_waits_for_the_first(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    other = StoreLease(registry.store, SWAP_LEASE_NAME, "another-swapper", 60.0)
    assert other.try_acquire()  # another swap, maybe on another host, holds it
    with pytest.raises(e.SwapInProgress, match="another-swapper"):
        await hot_swap(client, registry, "2", drain_s=0, lock_timeout_s=0.2)
    other.release()
    assert fake.calls == []
    await hot_swap(client, registry, "2", drain_s=0, lock_timeout_s=0.2)
    assert fake.default == "2"


def test_sync_wrapper_swaps(fake: FakeManagement, registry: Registry) -> None:
    hot_swap_sync(MGMT, "http://ts:8085", registry, "2", drain_s=0,
                  transport=httpx.MockTransport(fake))
    assert fake.default == "2" and registry.load().default_version == "2"


async def test_sync_wrapper_refuses_a_running_loop(registry: Registry) -> None:
    with pytest.raises(RuntimeError, match="await hot_swap"):
        hot_swap_sync(MGMT, "http://ts:8085", registry, "2")


async def test_a_cancelled_swap_rolls_back_and_frees_the_lock(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.ready_after_register = False  # the swap is waiting for the worker when cancelled
    task = asyncio.create_task(hot_swap(client, registry, "2", drain_s=0, worker_timeout_s=30))
    await asyncio.sleep(0.8)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.calls[-1] == "unregister 2"
    assert fake.default == "1" and registry.load().default_version == "1"

    fake.ready_after_register = True
    await hot_swap(client, registry, "2", drain_s=0, lock_timeout_s=0.5)
    assert fake.default == "2"


async def test_new_version_is_warmed_up_before_it_takes_traffic(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    await hot_swap(client, registry, "2", drain_s=0, warmup_requests=3)

    warm = [i for i, call in enumerate(fake.calls) if call == "probe 2"]
    assert len(warm) == 3
    # After the worker is READY, before any unpinned request can reach it.
    assert fake.calls.index("describe 2") < warm[0] and warm[-1] < fake.calls.index("set-default 2")


async def test_failed_warm_up_fails_the_swap_and_the_old_version_keeps_serving(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    fake.fail["probe"] = 500  # READY, but it cannot answer a prediction

    with pytest.raises(e.ModelNotReady, match="warm-up"):
        await hot_swap(client, registry, "2", drain_s=0)

    assert "set-default 2" not in fake.calls and fake.calls[-1] == "unregister 2"
    assert fake.default == "1" and set(fake.loaded) == {"1"}
    assert registry.load().default_version == "1"


async def test_no_warm_up_when_asked_for_none(
    client: TorchServeClient, fake: FakeManagement, registry: Registry
) -> None:
    await hot_swap(client, registry, "2", drain_s=0, warmup_requests=0)

    assert "probe 2" not in fake.calls
