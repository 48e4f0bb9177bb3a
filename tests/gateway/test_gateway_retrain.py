"""The retrain trigger (every k feedback rows), ``POST /retrain`` and ``GET /retrain/{job_id}``.

Spawning the job process is ``yoloserve.retrain.jobs.start_job_process``'s business (tested with
it); here it is replaced by a recorder, and the gateway's decisions around it are checked.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.retrain_trigger import crosses_multiple, next_multiple, retrain_settings_for
from tests.gateway.fake_torchserve import HANDLER_ANSWER, FakeTorchServe, assert_error
from tests.gateway.test_gateway_feedback import feedback_form, read_rows, seed_registry
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.modelserver.registry import Registry, RetrainProgress
from yoloserve.retrain import jobs as retrain
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.store.tables import JobRow


@dataclass
class FakeStarter:
    """Stands in for ``start_job_process``: records calls, answers ids or raises ``error``."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, settings: RetrainSettings, *, trigger: str, registry: Registry | None = None,
        launcher: object = None,
    ) -> str:
        with self.lock:
            self.calls.append({"settings": settings, "trigger": trigger, "registry": registry})
            if self.error is not None:
                raise self.error
            return f"r-{len(self.calls):04d}"


@pytest.fixture
def starter(monkeypatch: pytest.MonkeyPatch) -> FakeStarter:
    fake = FakeStarter()
    monkeypatch.setattr(retrain, "start_job_process", fake)
    return fake


@pytest.fixture
def no_predictions(fake_ts: FakeTorchServe) -> None:
    """The model finds nothing: each feedback writes exactly one row per ground-truth box."""
    answer = {**HANDLER_ANSWER, "boxes": []}
    fake_ts.predict = lambda request: httpx.Response(200, json=answer)


def boxes(n: int) -> list[dict[str, Any]]:
    return [{"xyxy": [i, 0, i + 5, 5], "name": "circle"} for i in range(n)]


def post_rows(client: TestClient, n: int) -> dict[str, Any]:
    response = client.post("/feedback", **feedback_form(boxes(n)))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["rows_written"] == n
    return body


@pytest.mark.parametrize(
    ("before", "after", "k", "crosses", "next_at"),
    [
        (0, 1, 5, False, 5),
        (4, 5, 5, True, 10),
        (5, 6, 5, False, 10),
        (3, 12, 5, True, 15),  # passes 5 and 10 at once: one job
        (49, 50, 50, True, 100),
        (50, 50, 50, False, 100),  # no rows written
    ],
)
def test_crossing_and_next_multiple(
    before: int, after: int, k: int, crosses: bool, next_at: int
) -> None:
    assert crosses_multiple(before, after, k) is crosses
    assert next_multiple(after, k) == next_at


def test_retrain_settings_default_to_the_gateways_torchserve(settings: Settings) -> None:
    gateway = settings.model_copy(
        update={
            "torchserve_inference_url": "http://ts:1",
            "torchserve_management_url": "http://ts:2",
        }
    )
    inherited = retrain_settings_for(gateway, RetrainSettings())
    explicit = retrain_settings_for(gateway, RetrainSettings(management_url="http://other:3"))

    assert inherited.inference_url == "http://ts:1"
    assert inherited.management_url == "http://ts:2"
    assert inherited.store == settings.store
    assert inherited.feedback_dir == settings.data_dir / "feedback"
    assert explicit.management_url == "http://other:3"


@pytest.mark.usefixtures("no_predictions")
def test_feedback_triggers_a_job_at_each_multiple_of_k(
    build_app: Callable[..., FastAPI], settings: Settings, starter: FakeStarter
) -> None:
    seed_registry(settings.store.url)
    with TestClient(build_app(retrain=RetrainSettings(every_k=5))) as client:
        first, second = post_rows(client, 2), post_rows(client, 2)
        third = post_rows(client, 2)
        fourth = post_rows(client, 4)

    assert first["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 5}
    assert second["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 5}
    assert third["prod_rows_total"] == 6
    assert third["retrain"] == {"triggered": True, "job_id": "r-0001", "next_at_rows": 10}
    assert fourth["retrain"] == {"triggered": True, "job_id": "r-0002", "next_at_rows": 15}
    assert [call["trigger"] for call in starter.calls] == ["feedback", "feedback"]
    call = starter.calls[0]
    assert call["registry"].store.url == settings.store.url
    assert call["settings"].every_k == 5


@pytest.mark.usefixtures("no_predictions")
def test_running_job_defers_to_the_next_multiple(
    build_app: Callable[..., FastAPI], settings: Settings, starter: FakeStarter
) -> None:
    seed_registry(settings.store.url)
    starter.error = RetrainAlreadyRunning("job r-0001 is running")
    with TestClient(build_app(retrain=RetrainSettings(every_k=3))) as client:
        body = post_rows(client, 4)
        text = client.get("/metrics").text

    # The rows are stored (201) and wait for the next multiple.
    assert body["prod_rows_total"] == 4
    assert body["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 6}
    assert len(read_rows(settings.data_dir)) == 4
    assert 'gateway_retrains_total{outcome="already_running",trigger="feedback"} 1.0' in text


@pytest.mark.usefixtures("no_predictions")
def test_failed_spawn_still_acknowledges_the_feedback(
    build_app: Callable[..., FastAPI], settings: Settings, starter: FakeStarter
) -> None:
    seed_registry(settings.store.url)
    starter.error = OSError("fork failed")
    with TestClient(build_app(retrain=RetrainSettings(every_k=2))) as client:
        body = post_rows(client, 2)
        text = client.get("/metrics").text

    assert body["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 4}
    assert 'gateway_retrains_total{outcome="start_failed",trigger="feedback"} 1.0' in text


@pytest.mark.usefixtures("no_predictions")
def test_a_restarted_gateway_resumes_counting_from_the_csv(
    build_app: Callable[..., FastAPI], settings: Settings, starter: FakeStarter
) -> None:
    seed_registry(settings.store.url)
    every_5 = RetrainSettings(every_k=5)
    with TestClient(build_app(retrain=every_5)) as before_restart:
        assert post_rows(before_restart, 4)["retrain"]["triggered"] is False
    with TestClient(build_app(retrain=every_5)) as after_restart:
        body = post_rows(after_restart, 2)

    assert body["prod_rows_total"] == 6
    assert body["retrain"] == {"triggered": True, "job_id": "r-0001", "next_at_rows": 10}
    assert len(starter.calls) == 1


@pytest.mark.usefixtures("no_predictions")
async def test_concurrent_feedback_triggers_once_per_multiple(
    build_app: Callable[..., FastAPI], settings: Settings, starter: FakeStarter
) -> None:
    seed_registry(settings.store.url)
    app = build_app(retrain=RetrainSettings(every_k=10))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client,
    ):
        responses = await asyncio.gather(
            *(client.post("/feedback", **feedback_form(boxes(3))) for _ in range(32))
        )

    bodies = [r.json() for r in responses]
    assert [r.status_code for r in responses] == [201] * 32
    # 96 rows pass 10, 20, ..., 90: nine jobs, one per multiple, whatever the interleaving.
    assert len(starter.calls) == 9
    triggered = sorted(b["prod_rows_total"] for b in bodies if b["retrain"]["triggered"])
    assert [total // 10 for total in triggered] == list(range(1, 10))


def test_post_retrain_starts_a_job(build_app: Callable[..., FastAPI], starter: FakeStarter) -> None:
    with TestClient(build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])) as client:
        response = client.post("/retrain", headers={"X-API-Key": "admin-key"})
        text = client.get("/metrics").text

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["job_id"] == "r-0001"
    assert body["state"] == "queued"
    assert set(body) == {
        "job_id",
        "state",
        "started_at",
        "finished_at",
        "candidate_version",
        "metrics",
        "reason",
        "progress",
    }
    assert body["progress"] is None  # queued: not running yet
    assert [call["trigger"] for call in starter.calls] == ["api"]
    assert 'gateway_retrains_total{outcome="started",trigger="api"} 1.0' in text


def test_post_retrain_while_one_runs_is_a_conflict(
    client: TestClient, starter: FakeStarter
) -> None:
    starter.error = RetrainAlreadyRunning("job r-0003 is running")

    assert_error(client.post("/retrain"), 409, "retrain_already_running")


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "unauthorized"), ("user-key", 403, "forbidden"), ("wrong", 403, "forbidden")],
)
def test_post_retrain_needs_the_admin_key(
    build_app: Callable[..., FastAPI],
    starter: FakeStarter,
    key: str | None,
    status: int,
    code: str,
) -> None:
    headers = {"X-API-Key": key} if key else {}
    with TestClient(build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])) as client:
        assert_error(client.post("/retrain", headers=headers), status, code)
    assert starter.calls == []


def test_get_retrain_reports_the_job_record(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    started = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    Registry(open_store(settings.store.url)).record_job(
        job_id="r-0007",
        state="rejected",
        started_at=started,
        finished_at=started.replace(minute=9),
        candidate_version="4",
        metrics={"candidate": {"map50": 0.91}, "current": {"map50": 0.93}},
        reason="candidate map50 0.91 < current 0.93 - tolerance 0.01",
        trigger="feedback",
        pid=1234,
    )
    # Keys configured: reading a job stays open all the same.
    with TestClient(build_app(api_keys=["user-key"])) as client:
        response = client.get("/retrain/r-0007")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": "r-0007",
        "state": "rejected",
        "started_at": "2026-11-23T10:00:00Z",
        "finished_at": "2026-11-23T10:09:00Z",
        "candidate_version": "4",
        "metrics": {"candidate": {"map50": 0.91}, "current": {"map50": 0.93}},
        "reason": "candidate map50 0.91 < current 0.93 - tolerance 0.01",
        "progress": None,  # recorded before progress existed: still a valid record
    }


def test_get_retrain_reports_the_progress_of_a_running_job(
    client: TestClient, settings: Settings
) -> None:
    registry = Registry(open_store(settings.store.url))
    registry.record_job(job_id="r-0008", state="running", started_at=datetime.now(UTC),
                        pid=os.getpid())  # a live process: not reaped as stale
    updated = datetime(2026, 11, 23, 10, 3, tzinfo=UTC)
    registry.set_job_progress("r-0008", RetrainProgress(
        phase="training", epoch=3, epochs=8, eta_s=95.0, updated_at=updated))

    body = client.get("/retrain/r-0008").json()

    assert body["state"] == "running"
    assert body["progress"] == {"phase": "training", "epoch": 3, "epochs": 8, "eta_s": 95.0,
                                "updated_at": "2026-11-23T10:03:00Z"}


def test_get_retrain_reports_a_job_whose_process_died_as_failed(
    client: TestClient, settings: Settings
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Registry(open_store(settings.store.url)).record_job(
        job_id="r-0003", state="running", started_at=datetime.now(UTC), pid=dead.pid
    )

    body = client.get("/retrain/r-0003").json()

    assert body["state"] == "failed"
    assert body["reason"]


def test_get_unknown_job_is_404(client: TestClient) -> None:
    assert_error(client.get("/retrain/r-9999"), 404, "unknown_job")


def test_get_job_with_a_malformed_id_is_400(client: TestClient) -> None:
    assert_error(client.get("/retrain/bad id!"), 400, "invalid_parameter")


def test_metrics_report_registry_jobs_by_state(client: TestClient, settings: Settings) -> None:
    registry = Registry(open_store(settings.store.url))
    registry.record_job(state="succeeded")
    registry.record_job(state="rejected")
    registry.record_job(state="succeeded")

    text = client.get("/metrics").text

    assert 'gateway_retrain_jobs{state="succeeded"} 2.0' in text
    assert 'gateway_retrain_jobs{state="rejected"} 1.0' in text


def test_metrics_survive_an_unreadable_registry(client: TestClient, settings: Settings) -> None:
    with open_store(settings.store.url).write() as session:  # a record no model reads
        session.add(JobRow(job_id="r-0001", kind="retrain", state="queued", seq=1,
                           record={"job_id": 7, "state": "nonsense"}))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert "gateway_requests_total" in response.text
