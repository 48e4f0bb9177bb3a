"""``GET /models`` from the registry (``yoloserve.modelserver.registry``, in the store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.gateway.fake_torchserve import assert_error
from tests.support import store_settings
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import open_store
from yoloserve.store.tables import VersionRow


def _write_registry(path: Path) -> None:
    registry = Registry(open_store(store_settings(path).url))
    classes = ["circle", "square", "triangle"]
    registry.add_version(
        sha256="ab" * 32,
        mar="yolo_v1.mar",
        classes=classes,
        metrics={"map50": 0.91, "map50_95": 0.7},
        trained_on={"ref_images": 800, "feedback_images": 0},
    )
    registry.add_version(
        sha256="cd" * 32,
        mar="yolo_v2.mar",
        classes=classes,
        parent="1",
        metrics={"map50": 0.94, "map50_95": 0.77},
        trained_on={"ref_images": 800, "feedback_images": 40},
    )
    registry.set_default("2")


def test_models_lists_the_registry(build_app: Callable[..., FastAPI], tmp_path: Path) -> None:
    path = tmp_path
    _write_registry(path)
    with TestClient(build_app(store=store_settings(path))) as client:
        response = client.get("/models")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "yolo"
    assert body["default_version"] == "2"
    assert body["classes"] == ["circle", "square", "triangle"]
    by_version = {v["version"]: v for v in body["versions"]}
    assert set(by_version) == {"1", "2"}
    two = by_version["2"]
    assert two["status"] == "serving" and by_version["1"]["status"] == "ready"
    assert two["parent"] == "1"
    assert two["metrics"] == {"map50": 0.94, "map50_95": 0.77}
    assert two["trained_on"] == {"ref_images": 800, "feedback_images": 40}
    assert two["created_at"]
    assert "sha256" not in two and "mar" not in two  # internal bookkeeping stays inside


def test_models_without_a_registry_is_empty(client: TestClient) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    assert response.json() == {
        "name": "yolo",
        "default_version": None,
        "classes": [],
        "versions": [],
    }


def test_corrupt_registry_is_a_500_json(build_app: Callable[..., FastAPI], tmp_path: Path) -> None:
    with open_store(store_settings(tmp_path).url).write() as session:  # no model reads it
        session.add(VersionRow(version=1, status="serving", sha256="0" * 64,
                               record={"version": "1", "mar": 7}))
    with TestClient(build_app(store=store_settings(tmp_path))) as client:
        assert_error(client.get("/models"), 500, "registry_error")


def test_models_name_their_sets_and_link_their_mlflow_runs(
    build_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    path = tmp_path
    _write_registry(path)
    bench = {"name": "shapes-test", "images": 150, "manifest_sha256": "9f" * 32}
    with Registry(open_store(store_settings(path).url)).update() as data:
        two = data.get("2")
        two.metrics["eval_set"] = {"name": "r-0001 held-out", "images": 60,
                                   "manifest_sha256": "51" * 32}
        two.benchmark = {"set": bench, "map50": 0.97}
        two.mlflow_run_id, two.mlflow_experiment_id = "abc123", "7"
    app = build_app(store=store_settings(path), mlflow_ui_url="http://127.0.0.1:8083/")
    with TestClient(app) as client:
        body = client.get("/models").json()
    by_version = {v["version"]: v for v in body["versions"]}
    two_shown = by_version["2"]
    assert two_shown["metrics"]["eval_set"]["images"] == 60
    assert two_shown["benchmark"] == {"set": bench, "map50": 0.97}
    assert two_shown["mlflow_run_id"] == "abc123"
    assert two_shown["mlflow_run_url"] == "http://127.0.0.1:8083/#/experiments/7/runs/abc123"
    assert by_version["1"]["mlflow_run_url"] is None and by_version["1"]["benchmark"] == {}


def test_models_have_no_run_links_without_an_mlflow_ui(
    build_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    path = tmp_path
    _write_registry(path)
    with Registry(open_store(store_settings(path).url)).update() as data:
        data.get("2").mlflow_run_id = "abc123"
        data.get("2").mlflow_experiment_id = "7"
    with TestClient(build_app(store=store_settings(path))) as client:
        body = client.get("/models").json()
    assert all(v["mlflow_run_url"] is None for v in body["versions"])
