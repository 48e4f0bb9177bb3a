"""MLflow tracking against a real ``mlflow server``: a real 1-epoch retrain, a rollback, an outage.

One server per module (SQLite + proxied artifacts in a temporary folder, a free port), the
shared stack's TorchServe and gateway, and its trainer service with ``MLFLOW_TRACKING_URI``.
Everything is read back through MLflow's own client: the run's params, metrics and artifacts
(the dataset manifest included), the registered model's versions and the ``champion`` alias,
which must equal ``GET /models``' default.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.mlflow import MlflowServer
from devstack.ports import free_port
from tests.integration.conftest import Stack
from tests.integration.loop_support import (
    gateway_with,
    restore_default,
    retrain_env,
    torchserve_settings,
    trainer_running,
    wait_no_active_job,
    write_feedback,
)
from tests.integration.test_retrain_job import FEEDBACK_IMAGES
from tests.yoloserve.retrain.job_support import wait_final
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.jobs import start_job_process
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.store.settings import StoreSettings
from yoloserve.tracking import mirror
from yoloserve.tracking.settings import TrackingSettings
from yoloserve.training.dataset import generate_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "yolo"
BENCHMARK_IMAGES = 6


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), free_port())
    seconds = server.start()
    print(f"\nmlflow server up in {seconds:.1f} s at {server.url}")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "shapes"
    generate_dataset(ref, n_train=16, n_val=8, n_test=BENCHMARK_IMAGES, seed=21)
    return ref


def _client(server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.url)


def _settings(stack: Stack, ref: Path, **kw: Any) -> RetrainSettings:
    values: dict[str, Any] = dict(
        epochs=1, imgsz=320, batch=8, ref_train_images=16, ref_eval_images=8,
        benchmark_images=BENCHMARK_IMAGES, tolerance=1.0, timeout_s=900, drain_s=1.0,
        ref_dir=ref, feedback_dir=stack.data_dir / "feedback",
        store=StoreSettings(database_url=stack.database_url),
        store_dir=stack.store_dir, run_dir=stack.run_dir, launcher="queue",
        torchserve=torchserve_settings(stack),
    )
    return RetrainSettings(**{**values, **kw})


def _champion(server: MlflowServer) -> str:
    return str(_client(server).get_model_version_by_alias(MODEL, "champion").version)


def _wait_champion(server: MlflowServer, version: str, timeout: float = 60) -> float:
    """The trainer's mirror moves the alias on its next idle turn; seconds it took."""
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < timeout:
        try:
            seen = _champion(server)
        except Exception as exc:  # the registered model may not exist yet
            seen = repr(exc)
        if seen == version:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"champion is {seen}, not v{version}, after {timeout} s")


def _assert_mirrored(server: MlflowServer, registry: Registry, default: str) -> None:
    """MLflow version N is registry version N, with its run and sha; champion = the default."""
    data = registry.load()
    versions = {mv.version: mv for mv in _client(server).search_model_versions(
        f"name='{MODEL}'")}
    assert set(versions) == {v.version for v in data.versions}
    for record in data.versions:
        tags = versions[record.version].tags
        assert tags["weights_sha256"] == record.sha256
        assert tags["run_id"] == record.mlflow_run_id == versions[record.version].run_id
        assert tags["status"] == record.status
    assert _champion(server) == default == data.default_version


def test_scripts_train_is_a_run(mlflow_server: MlflowServer, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from scripts.train import app

    data = generate_dataset(tmp_path / "shapes", n_train=8, n_val=4, n_test=4, seed=3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("TRACKING_EXPERIMENT", "train-cli")
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--epochs", "1",
                                      "--batch", "4", "--runs", str(tmp_path / "runs"),
                                      "--no-install"])
    assert result.exit_code == 0, result.output
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name("train-cli")
    (run,) = client.search_runs([experiment.experiment_id])
    # Named after the dataset's folder (models/<name> is where it would install).
    assert run.info.status == "FINISHED" and run.info.run_name == "train shapes model"
    assert run.data.params["epochs"] == "1" and run.data.params["data.train"] == "8"
    assert 0.0 <= run.data.metrics["test.map50"] <= 1.0
    assert "shapes-test" in run.data.params["eval_set"]
    artifacts = _artifact_paths(client, run.info.run_id)
    assert {"dataset/dataset_manifest.json", "weights/best.pt",
            "plots/confusion_matrix.png", "plots/BoxPR_curve.png"} <= artifacts, artifacts
    assert client.get_metric_history(run.info.run_id, "epoch/train/box_loss")


def test_retrain_and_rollback_in_mlflow(stack: Stack, mlflow_server: MlflowServer,
                                        reference: Path, tmp_path: Path) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    write_feedback(stack.data_dir / "feedback", FEEDBACK_IMAGES, seed=41)
    settings = _settings(stack, reference)
    env = {**retrain_env(settings), "MLFLOW_TRACKING_URI": mlflow_server.url}
    client = _client(mlflow_server)

    with trainer_running(stack, env):
        started = time.monotonic()
        job_id = start_job_process(settings, trigger="test", registry=registry)
        try:
            job = wait_final(registry, job_id, timeout=900)
            wall_s = time.monotonic() - started
            log = job_log(settings, job_id).read_text(errors="replace")
            assert job.state == "succeeded", f"{job.reason}\n{log[-3000:]}"
            new = job.candidate_version
            assert new is not None
            record = registry.get(new)
            _wait_champion(mlflow_server, new)
            _assert_mirrored(mlflow_server, registry, new)

            # The run: params, per-epoch and final metrics, the gate, artifacts.
            assert record.mlflow_run_id is not None
            run = client.get_run(record.mlflow_run_id)
            params, metrics = run.data.params, run.data.metrics
            assert run.info.status == "FINISHED" and run.info.run_name == f"retrain {job_id}"
            assert params["epochs"] == "1" and params["imgsz"] == "320"
            assert params["optimizer"] == "SGD" and params["lr0"] == "0.002"
            assert params["parent_version"] == first and params["trigger"] == "test"
            assert params["version"] == new and params["gate.promote"] == "True"
            assert params["gate.reason"] in (job.reason or "")
            assert params["data.ref_train"] == "16"
            for side in ("candidate", "current"):
                assert metrics[f"{side}.map50"] == pytest.approx(job.metrics[side]["map50"])
            assert metrics["benchmark.candidate.map50"] == pytest.approx(
                record.benchmark["map50"])
            history = client.get_metric_history(run.info.run_id, "epoch/metrics/mAP50B")
            # One point per epoch, plus Ultralytics' final validation of best.pt.
            assert [m.step for m in history][0] == 0 and len(history) <= settings.epochs + 1
            assert any(k.startswith("epoch/train/box_loss") for k in metrics)
            artifacts = _artifact_paths(client, run.info.run_id)
            for name in ("dataset/dataset_manifest.json", "weights/last.pt",
                         f"mar/{record.mar}", "plots/candidate/BoxPR_curve.png",
                         "plots/candidate/confusion_matrix.png",
                         "plots/current/confusion_matrix.png"):
                assert name in artifacts, sorted(artifacts)

            # The manifest names every image and label it trained and was judged on.
            local = client.download_artifacts(run.info.run_id, "dataset/dataset_manifest.json",
                                              str(tmp_path))
            manifest = json.loads(Path(local).read_text())
            assert manifest["sha256"] == record.trained_on["manifest_sha256"]
            splits = {e["split"] for e in manifest["files"]}
            assert splits == {"train", "test"}
            assert all(len(e["image_sha256"]) == 64 for e in manifest["files"])
            assert manifest["splits"]["test"]["images"] == record.metrics["eval_set"]["images"]

            # Metrics that compare: a named eval set, and the same benchmark set for both.
            bench = record.benchmark["set"]
            assert bench["name"] == "shapes-test" and bench["images"] == BENCHMARK_IMAGES
            assert registry.get(first).benchmark["set"] == bench
            with gateway_with(stack, {"GATEWAY_MLFLOW_UI_URL": mlflow_server.url}):
                models = httpx.get(f"{stack.gateway_url}/models", timeout=30).json()
            assert models["default_version"] == _champion(mlflow_server) == new
            shown = {v["version"]: v for v in models["versions"]}
            assert shown[new]["mlflow_run_url"].endswith(f"/runs/{record.mlflow_run_id}")
            assert shown[new]["benchmark"]["set"] == shown[first]["benchmark"]["set"]
            assert shown[new]["metrics"]["eval_set"]["images"] == (
                job.data["ref_eval"] + job.data["feedback_eval"])

            # Rollback by anyone (here the intent POST /models/{v}/activate records): the
            # controller swaps it in, and its mirror moves the alias back.
            rollback = registry.wait_job(registry.request_activation(first).job_id, 300)
            assert rollback.state == "succeeded", rollback.reason
            moved_s = _wait_champion(mlflow_server, first)
            _assert_mirrored(mlflow_server, registry, first)
            print(f"\nretrain {job_id} tracked in {wall_s:.0f} s; champion back to v{first} "
                  f"{moved_s:.1f} s after the rollback")
        finally:
            wait_no_active_job(registry)
            restore_default(stack, first)


def _artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_a_rejected_candidate_stays_a_version_tagged_with_its_gate_result(
    stack: Stack, mlflow_server: MlflowServer, reference: Path
) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    settings = _settings(stack, reference, tolerance=-1.0)  # must beat the champion by 1.0
    env = {**retrain_env(settings), "MLFLOW_TRACKING_URI": mlflow_server.url}
    client = _client(mlflow_server)

    with trainer_running(stack, env):
        job_id = start_job_process(settings, trigger="test", registry=registry)
        try:
            job = wait_final(registry, job_id, timeout=900)
            assert job.state == "rejected", job.reason
            version = job.candidate_version
            assert version is not None and registry.get(version).status == "rejected"
            deadline = time.monotonic() + 60
            while True:  # the job's own sync runs just after it is recorded final
                try:
                    mv = client.get_model_version(MODEL, version)
                    break
                except Exception:
                    assert time.monotonic() < deadline, f"v{version} never reached MLflow"
                    time.sleep(0.5)
            assert mv.tags["gate"] == "rejected" and mv.tags["status"] == "rejected"
            assert mv.tags["gate_reason"] == job.reason and mv.tags["job_id"] == job_id
            assert _champion(mlflow_server) == first, "a rejected candidate is never champion"
            run = client.get_run(registry.get(version).mlflow_run_id)
            assert run.data.params["gate.promote"] == "False"
            assert run.info.status == "FINISHED"
        finally:
            wait_no_active_job(registry)
            restore_default(stack, first)


def test_mlflow_outage_during_retrain(stack: Stack, mlflow_server: MlflowServer,
                                      reference: Path) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    write_feedback(stack.data_dir / "feedback", FEEDBACK_IMAGES, seed=51)
    settings = _settings(stack, reference)
    env = {**retrain_env(settings), "MLFLOW_TRACKING_URI": mlflow_server.url}
    failures_before = _mirror_failures(stack)

    with trainer_running(stack, env):
        job_id = start_job_process(settings, trigger="test", registry=registry)
        try:
            deadline = time.monotonic() + 300
            while registry.get_job(job_id).state == "queued":
                assert time.monotonic() < deadline, "the trainer never claimed the job"
                time.sleep(0.2)
            time.sleep(3)  # the run is created; training has started
            mlflow_server.kill()
            job = wait_final(registry, job_id, timeout=900)
            log = job_log(settings, job_id).read_text(errors="replace")
            assert job.state == "succeeded", f"{job.reason}\n{log[-3000:]}"
            new = job.candidate_version
            assert new is not None and registry.load().default_version == new

            # The new version serves though MLflow is down, and the outage is counted.
            sample = stack.data_dir / "samples" / "shapes_1.jpg"
            response = httpx.post(f"{stack.gateway_url}/predict", timeout=60,
                                  files={"file": (sample.name, sample.read_bytes())})
            assert response.status_code == 200 and response.headers["X-Model-Version"] == new
            assert _mirror_failures(stack) > failures_before
            assert "MLflow" in log

            # MLflow back (same database): a sync (make mlflow-sync) makes it agree. (The
            # trainer's own retry, every 30 s, may have got there first: same result.)
            mlflow_server.start()
            report = mirror.sync(registry, TrackingSettings(tracking_uri=mlflow_server.url),
                                 stack.run_dir)
            assert report.champion == new and not report.mismatched
            run = _client(mlflow_server).get_run(registry.get(new).mlflow_run_id)
            assert run.info.status == "FINISHED", "the run the outage left open is closed"
            _assert_mirrored(mlflow_server, registry, new)
            assert _mirror_in_sync(stack) in (0.0, 1.0)
        finally:
            wait_no_active_job(registry)
            restore_default(stack, first)


def _scrape(stack: Stack) -> str:
    return httpx.get(f"{stack.gateway_url}/metrics", timeout=30).text


def _mirror_failures(stack: Stack) -> float:
    for line in _scrape(stack).splitlines():
        if line.startswith("gateway_mlflow_mirror_failures_total"):
            return float(line.split()[-1])
    raise AssertionError("no gateway_mlflow_mirror_failures_total on /metrics")


def _mirror_in_sync(stack: Stack) -> float | None:
    for line in _scrape(stack).splitlines():
        if line.startswith("gateway_mlflow_mirror_in_sync"):
            return float(line.split()[-1])
    return None
