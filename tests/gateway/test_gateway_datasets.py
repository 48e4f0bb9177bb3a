"""``GET /datasets/feedback/export``: admin only, a streamed zip, 400 and 404 as documented."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.yoloserve.datasets.conftest import truth  # noqa: F401  (a fixture)
from tests.yoloserve.datasets.test_dataset_export import record_feedback
from yoloserve.store.engine import Store

ADMIN = {"X-API-Key": "admin-key"}
USER = {"X-API-Key": "user-key"}


@pytest.fixture
def admin_client(build_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(build_app(api_keys=["user-key"], admin_api_keys=["admin-key"])) as client:
        yield client


def test_export_needs_an_admin_key(admin_client: TestClient) -> None:
    assert admin_client.get("/datasets/feedback/export").status_code == 401
    assert admin_client.get("/datasets/feedback/export", headers=USER).status_code == 403


def test_unknown_format_is_400_and_nothing_collected_is_404(admin_client: TestClient) -> None:
    bad = admin_client.get("/datasets/feedback/export?format=voc", headers=ADMIN)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_parameter")
    empty = admin_client.get("/datasets/feedback/export?format=yolo", headers=ADMIN)
    assert (empty.status_code, empty.json()["error"]["code"]) == (404, "no_labels_collected")


def test_export_is_a_zip_attachment(
    admin_client: TestClient, settings: Settings,
    truth: dict, tmp_path: Path,  # noqa: F811  (truth: the imported fixture)
) -> None:
    store = Store(settings.store.url)
    record_feedback(store, settings.data_dir, truth)

    response = admin_client.get("/datasets/feedback/export?format=coco", headers=ADMIN)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
    assert "annotations.json" in names and len(names) == len(truth) + 1
