"""``POST /models/{version}/activate``: an intent. The gateway checks the version can serve,
records a queued ``activate`` job and answers 202 without a call to the model server; the
controller carries it out (tests/yoloserve/controller/test_rollouts.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.gateway.fake_torchserve import FakeTorchServe, assert_error
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import open_store

CLASSES = ["circle", "square", "triangle"]
ADMIN = {"X-API-Key": "admin-key"}


@pytest.fixture
def registry(settings: Settings) -> Registry:
    """Version 1 serving, version 2 ready (a rollback target), version 3 rejected."""
    registry = Registry(open_store(settings.store.url))
    for version, digit in (("1", "1"), ("2", "2"), ("3", "3")):
        registry.add_version(
            sha256=digit * 64, mar=f"yolo_v{version}.mar", classes=CLASSES, version=version
        )
    registry.set_status("3", "rejected")
    return registry


@pytest.fixture
def admin_client(build_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    app = build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])
    with TestClient(app) as client:
        yield client


def test_activate_records_an_intent_and_answers_202_at_once(
    admin_client: TestClient, fake_ts: FakeTorchServe, registry: Registry
) -> None:
    response = admin_client.post("/models/2/activate", headers=ADMIN)

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["job_id"], body["kind"], body["version"], body["state"]) == (
        "a-0001", "activate", "2", "queued")
    assert not [r for r in fake_ts.requests if r.url.path.startswith("/models")], "no swap"
    assert registry.load().default_version == "1", "nothing changes before the controller acts"
    followed = admin_client.get(f"/jobs/{body['job_id']}").json()
    assert followed == body
    # A second request is a second intent, run after the first.
    assert admin_client.post("/models/1/activate", headers=ADMIN).json()["job_id"] == "a-0002"


def test_the_job_reports_what_the_controller_recorded(
    admin_client: TestClient, registry: Registry
) -> None:
    job_id = admin_client.post("/models/2/activate", headers=ADMIN).json()["job_id"]
    registry.update_job(job_id, state="failed", reason="model_server_error: load failed")

    body = admin_client.get(f"/jobs/{job_id}").json()

    assert (body["state"], body["reason"]) == ("failed", "model_server_error: load failed")


def test_activate_unknown_version_is_404(admin_client: TestClient, registry: Registry) -> None:
    assert_error(admin_client.post("/models/9/activate", headers=ADMIN), 404, "unknown_version")
    assert registry.jobs(kind="activate") == []


def test_activate_rejected_version_is_a_conflict(
    admin_client: TestClient, registry: Registry
) -> None:
    assert_error(admin_client.post("/models/3/activate", headers=ADMIN), 409, "version_rejected")
    assert registry.jobs(kind="activate") == []


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "unauthorized"), ("user-key", 403, "forbidden")],
)
def test_activate_needs_the_admin_key(
    admin_client: TestClient, registry: Registry, key: str | None, status: int, code: str,
) -> None:
    headers = {"X-API-Key": key} if key else {}
    assert_error(admin_client.post("/models/2/activate", headers=headers), status, code)
    assert registry.jobs(kind="activate") == []


def test_activate_malformed_version_is_400(admin_client: TestClient) -> None:
    response = admin_client.post("/models/..%20x/activate", headers=ADMIN)
    assert_error(response, 400, "invalid_parameter")


def test_unknown_job_is_404(admin_client: TestClient) -> None:
    assert_error(admin_client.get("/jobs/a-9999"), 404, "unknown_job")
