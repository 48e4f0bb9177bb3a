"""The retrain trigger (every k feedback rows), ``POST /retrain`` and ``GET /retrain/{job_id}``.

The gateway only records retrain intents (queued jobs in the store); running them is the
controller's business (tests/yoloserve/controller). Here the intents and their rules are checked
in the store the gateway writes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from gateway.config import Settings
from gateway.retrain_trigger import crosses_multiple, next_multiple
from tests.gateway.fake_torchserve import HANDLER_ANSWER, FakeTorchServe, assert_error
from tests.gateway.test_gateway_feedback import feedback_form, read_rows, seed_registry
from yoloserve.modelserver.registry import Registry, RetrainJob, RetrainProgress
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.store.tables import JobRow


def retrain_jobs(settings: Settings) -> list[RetrainJob]:
    return Registry(open_store(settings.store.url)).jobs(kind="retrain")


def finish_jobs(settings: Settings) -> None:
    """What a controller would do: end every queued job (the next intent may then be recorded)."""
    registry = Registry(open_store(settings.store.url))
    for job in registry.jobs(kind="retrain", states=("queued", "running")):
        registry.update_job(job.job_id, state="succeeded")


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


@pytest.mark.usefixtures("no_predictions")
def test_feedback_triggers_a_job_at_each_multiple_of_k(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    seed_registry(settings.store.url)
    with TestClient(build_app(retrain=RetrainSettings(every_k=5))) as client:
        first, second = post_rows(client, 2), post_rows(client, 2)
        third = post_rows(client, 2)
        finish_jobs(settings)
        fourth = post_rows(client, 4)

    assert first["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 5}
    assert second["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 5}
    assert third["prod_rows_total"] == 6
    assert third["retrain"] == {"triggered": True, "job_id": "r-0001", "next_at_rows": 10}
    assert fourth["retrain"] == {"triggered": True, "job_id": "r-0002", "next_at_rows": 15}
    assert [(j.trigger, j.kind) for j in retrain_jobs(settings)] == [("feedback", "retrain")] * 2


@pytest.mark.usefixtures("no_predictions")
def test_running_job_defers_to_the_next_multiple(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    seed_registry(settings.store.url)
    Registry(open_store(settings.store.url)).record_job(state="running")
    with TestClient(build_app(retrain=RetrainSettings(every_k=3))) as client:
        body = post_rows(client, 4)
        text = client.get("/metrics").text

    # The rows are stored (201) and wait for the next multiple.
    assert body["prod_rows_total"] == 4
    assert body["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 6}
    assert len(read_rows(settings.data_dir)) == 4
    assert 'gateway_retrains_total{outcome="already_running",trigger="feedback"} 1.0' in text


@pytest.mark.usefixtures("no_predictions")
def test_an_intent_that_cannot_be_recorded_still_acknowledges_the_feedback(
    build_app: Callable[..., FastAPI], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_registry(settings.store.url)

    def broken(self: Registry, **fields: Any) -> RetrainJob:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Registry, "record_job_if_idle", broken)
    with TestClient(build_app(retrain=RetrainSettings(every_k=2))) as client:
        body = post_rows(client, 2)
        text = client.get("/metrics").text

    assert body["retrain"] == {"triggered": False, "job_id": None, "next_at_rows": 4}
    assert 'gateway_retrains_total{outcome="start_failed",trigger="feedback"} 1.0' in text


@pytest.mark.usefixtures("no_predictions")
def test_a_restarted_gateway_resumes_counting_from_the_csv(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    seed_registry(settings.store.url)
    every_5 = RetrainSettings(every_k=5)
    with TestClient(build_app(retrain=every_5)) as before_restart:
        assert post_rows(before_restart, 4)["retrain"]["triggered"] is False
    with TestClient(build_app(retrain=every_5)) as after_restart:
        body = post_rows(after_restart, 2)

    assert body["prod_rows_total"] == 6
    assert body["retrain"] == {"triggered": True, "job_id": "r-0001", "next_at_rows": 10}
    assert len(retrain_jobs(settings)) == 1


@pytest.mark.usefixtures("no_predictions")
async def test_concurrent_feedback_triggers_once_per_multiple(
    build_app: Callable[..., FastAPI], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A controller that ends each job the instant it is recorded: no crossing finds one active.
    record = Registry.record_job_if_idle

    def and_finish(self: Registry, **fields: Any) -> RetrainJob:
        return record(self, **{**fields, "state": "succeeded"})

    monkeypatch.setattr(Registry, "record_job_if_idle", and_finish)
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
    assert len(retrain_jobs(settings)) == 9
    triggered = sorted(b["prod_rows_total"] for b in bodies if b["retrain"]["triggered"])
    assert [total // 10 for total in triggered] == list(range(1, 10))


def test_post_retrain_records_a_queued_job(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    with TestClient(build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])) as client:
        response = client.post("/retrain", headers={"X-API-Key": "admin-key"})
        text = client.get("/metrics").text

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["job_id"] == "r-0001"
    assert body["state"] == "queued"
    assert set(body) == {
        "job_id",
        "kind",
        "version",
        "created_at",
        "state",
        "started_at",
        "finished_at",
        "candidate_version",
        "metrics",
        "reason",
        "progress",
    }
    assert body["progress"] is None  # queued: not running yet
    assert body["kind"] == "retrain" and body["created_at"]
    assert [(j.job_id, j.trigger, j.state) for j in retrain_jobs(settings)] == [
        ("r-0001", "api", "queued")]
    assert 'gateway_retrains_total{outcome="started",trigger="api"} 1.0' in text


def test_post_retrain_while_one_is_queued_or_running_is_a_conflict(
    client: TestClient, settings: Settings
) -> None:
    assert client.post("/retrain").status_code == 202
    error = assert_error(client.post("/retrain"), 409, "retrain_already_running")
    assert "r-0001" in error["message"]
    Registry(open_store(settings.store.url)).update_job("r-0001", state="running")
    assert_error(client.post("/retrain"), 409, "retrain_already_running")
    finish_jobs(settings)
    assert client.post("/retrain").json()["job_id"] == "r-0002"


def test_retrains_asked_at_once_through_two_gateways_record_one_job(
    build_app: Callable[..., FastAPI], settings: Settings
) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def ask(client: TestClient) -> None:
        barrier.wait()
        statuses.append(client.post("/retrain").status_code)

    with TestClient(build_app()) as one, TestClient(build_app()) as two:
        threads = [threading.Thread(target=ask, args=(c,)) for c in [one, two] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(statuses) == [202] + [409] * 7
    assert len(retrain_jobs(settings)) == 1


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "unauthorized"), ("user-key", 403, "forbidden"), ("wrong", 403, "forbidden")],
)
def test_post_retrain_needs_the_admin_key(
    build_app: Callable[..., FastAPI],
    settings: Settings,
    key: str | None,
    status: int,
    code: str,
) -> None:
    headers = {"X-API-Key": key} if key else {}
    with TestClient(build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])) as client:
        assert_error(client.post("/retrain", headers=headers), status, code)
    assert retrain_jobs(settings) == []


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
        "kind": "retrain",
        "version": None,
        "created_at": None,
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
                        pid=os.getpid())
    updated = datetime(2026, 11, 23, 10, 3, tzinfo=UTC)
    registry.set_job_progress("r-0008", RetrainProgress(
        phase="training", epoch=3, epochs=8, eta_s=95.0, updated_at=updated))

    body = client.get("/retrain/r-0008").json()

    assert body["state"] == "running"
    assert body["progress"] == {"phase": "training", "epoch": 3, "epochs": 8, "eta_s": 95.0,
                                "updated_at": "2026-11-23T10:03:00Z"}


def test_get_retrain_only_reads_a_job_the_controller_will_judge(
    client: TestClient, settings: Settings
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Registry(open_store(settings.store.url)).record_job(
        job_id="r-0003", state="running", started_at=datetime.now(UTC), pid=dead.pid
    )

    # The gateway changes no state: the controller reaps a job whose process died.
    assert client.get("/retrain/r-0003").json()["state"] == "running"
    assert client.get("/jobs/r-0003").json()["state"] == "running"


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
