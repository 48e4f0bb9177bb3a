"""``yoloserve.modelserver.client.TorchServeClient`` on ``httpx.MockTransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from yoloserve import errors as e
from yoloserve.modelserver.client import TorchServeClient

Responder = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Responder = lambda request: httpx.Response(200, json={"status": "ok"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def ts(recorder: Recorder) -> AsyncIterator[TorchServeClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        yield TorchServeClient(http, "http://ts:8085", "http://ts:8086/", "yolo")


async def test_register_sends_the_management_query(
    ts: TorchServeClient, recorder: Recorder
) -> None:
    await ts.register("yolo_v2.mar", initial_workers=2)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url.copy_with(query=None)) == "http://ts:8086/models"
    assert dict(request.url.params) == {
        "url": "yolo_v2.mar",
        "model_name": "yolo",
        "initial_workers": "2",
        "synchronous": "true",
    }


async def test_register_conflict(ts: TorchServeClient, recorder: Recorder) -> None:
    recorder.answer = lambda request: httpx.Response(409, json={"message": "already registered"})
    with pytest.raises(e.VersionAlreadyRegistered, match="already registered"):
        await ts.register("yolo_v2.mar")


async def test_set_default_and_unregister(ts: TorchServeClient, recorder: Recorder) -> None:
    await ts.set_default("yolo", "2")
    await ts.unregister("yolo", "1")
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("PUT", "/models/yolo/2/set-default"),
        ("DELETE", "/models/yolo/1"),
    ]


async def test_unknown_version_on_management(ts: TorchServeClient, recorder: Recorder) -> None:
    recorder.answer = lambda request: httpx.Response(404, json={"message": "no version 9"})
    with pytest.raises(e.UnknownVersion, match="no version 9"):
        await ts.set_default("yolo", "9")


async def test_describe_all_versions(ts: TorchServeClient, recorder: Recorder) -> None:
    described = [
        {"modelVersion": "1", "workers": [{"status": "READY"}, {"status": "UNLOADING"}]},
        {"modelVersion": "2", "workers": [{"status": "READY"}]},
    ]
    recorder.answer = lambda request: httpx.Response(200, json=described)
    assert await ts.describe_model(version="all") == described
    assert recorder.requests[0].url.path == "/models/yolo/all"
    assert TorchServeClient.live_workers(described) == 2


async def test_has_live_worker(ts: TorchServeClient, recorder: Recorder) -> None:
    recorder.answer = lambda request: httpx.Response(200, json=[{"workers": [{"status": "READY"}]}])
    assert await ts.has_live_worker("yolo", "3")
    assert recorder.requests[-1].url.path == "/models/yolo/3"
    recorder.answer = lambda request: httpx.Response(404, json={"message": "Model not found"})
    assert not await ts.has_live_worker()


async def test_version_cannot_escape_its_path_segment(
    ts: TorchServeClient, recorder: Recorder
) -> None:
    await ts.unregister("yolo", "../../models")
    assert recorder.requests[0].url.raw_path == b"/models/yolo/..%2F..%2Fmodels"


async def test_predict_handler_error_in_a_200_body(
    ts: TorchServeClient, recorder: Recorder
) -> None:
    recorder.answer = lambda request: httpx.Response(
        200, json={"error": {"code": "invalid_image", "message": "cannot decode"}}
    )
    with pytest.raises(e.InvalidImage, match="cannot decode"):
        await ts.predict(b"...")


async def test_non_json_answer(ts: TorchServeClient, recorder: Recorder) -> None:
    recorder.answer = lambda request: httpx.Response(200, text="<html>proxy</html>")
    with pytest.raises(e.ModelServerBadResponse):
        await ts.predict(b"...")


async def test_ping_false_when_unhealthy(ts: TorchServeClient, recorder: Recorder) -> None:
    recorder.answer = lambda request: httpx.Response(500, json={"status": "Unhealthy"})
    assert not await ts.ping()


async def test_pool_timeout_is_unavailable(ts: TorchServeClient, recorder: Recorder) -> None:
    def full(request: httpx.Request) -> httpx.Response:
        raise httpx.PoolTimeout("pool full")

    recorder.answer = full
    with pytest.raises(e.ModelServerUnavailable):
        await ts.ping()


async def test_a_worker_that_died_holding_the_request_is_unavailable(
    ts: TorchServeClient, recorder: Recorder
) -> None:
    # TorchServe's answer when a swap unloads (or a crash ends) the worker mid-request: nothing
    # was computed, so the gateway may send it again.
    recorder.answer = lambda request: httpx.Response(
        500, json={"code": 500, "type": "InternalServerException", "message": "Worker died."}
    )
    with pytest.raises(e.ModelServerUnavailable, match="worker stopped"):
        await ts.predict(b"...")
    recorder.answer = lambda request: httpx.Response(500, json={"message": "handler bug"})
    with pytest.raises(e.ModelServerError) as caught:
        await ts.predict(b"...")
    assert not isinstance(caught.value, e.ModelServerUnavailable)
