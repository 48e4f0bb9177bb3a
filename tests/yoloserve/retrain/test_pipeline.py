"""The retrain pipeline (yoloserve.retrain.pipeline): compiled to its spec, and run for real by
KFP's local runner (each component in its own subprocess, real 1-epoch training at imgsz 64).

The promote case runs with ``RETRAIN_DEPLOY=false`` (the settings fixture's): the deploy step runs
and finishes the job "not deployed"; the real hot swap of the same step function is exercised by
tests/integration/test_retrain_job.py through the local job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.yoloserve.retrain.job_support import queue_job
from yoloserve import paths
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.settings import RetrainSettings

kfp = pytest.importorskip("kfp")
pipeline = pytest.importorskip("yoloserve.retrain.pipeline")


def test_compiled_spec_names_every_step_image_resource_and_retry(tmp_path: Path) -> None:
    settings = RetrainSettings(pipeline_image="registry.example/yoloserve/trainer:9.9",
                               pipeline_gpu=True, pipeline_retries=2)
    out = pipeline.compile_pipeline(tmp_path / "p.yaml", settings)
    spec = next(yaml.safe_load_all(out.read_text()))  # then the platform spec (PVC mounts)

    tasks = dict(spec["root"]["dag"]["tasks"])
    branch = tasks.pop("condition-1")
    assert "gate-Output" in json.dumps(branch["triggerPolicy"]) and "promote" in json.dumps(branch)
    deploy = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    all_tasks = {**tasks, **deploy}
    assert set(all_tasks) == set(pipeline.TASKS)
    assert all(t["retryPolicy"]["maxRetryCount"] == 2 for t in all_tasks.values())
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == len(pipeline.TASKS)
    for name, task in all_tasks.items():
        container = executors[f"exec-{task['componentRef']['name'][len('comp-'):]}"]["container"]
        assert container["image"] == "registry.example/yoloserve/trainer:9.9"
        cpu, memory = pipeline.RESOURCES[name]
        assert container["resources"]["resourceCpuRequest"] == cpu
        assert container["resources"]["resourceMemoryRequest"] == memory
        gpu = container["resources"].get("accelerator", {})
        assert (gpu.get("resourceType") == "nvidia.com/gpu") == (name == "fine-tune"), name
        assert "pip install" not in json.dumps(container["command"]), "the image has the project"
    assert spec["pipelineInfo"]["name"] == "yoloserve-retrain"


def test_every_step_mounts_the_platform_volumes(tmp_path: Path) -> None:
    out = pipeline.compile_pipeline(tmp_path / "p.yaml", RetrainSettings())
    # The compiler writes the pipeline spec, then the platform (Kubernetes) spec.
    docs = list(yaml.safe_load_all(out.read_text()))
    platform = next(d for d in docs if "platforms" in d)["platforms"]["kubernetes"]
    executors = platform["deploymentSpec"]["executors"]
    assert len(executors) == len(pipeline.TASKS)
    for executor in executors.values():
        mounts = {m["constant"] if "constant" in m else m.get("pvcName"): m["mountPath"]
                  for m in executor["pvcMount"]}
        assert mounts == {"yoloserve-models": "/models", "yoloserve-data": "/data"}


@pytest.fixture
def local_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KFP's local runner; its component subprocesses import this checkout (not another one)."""
    from kfp import local

    monkeypatch.chdir(paths.ROOT)
    monkeypatch.setenv("PYTHONPATH", str(paths.ROOT))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    root = tmp_path / "kfp-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    return root


def _run(settings: RetrainSettings, job_id: str) -> str:
    overrides = settings.model_dump(mode="json", include={
        "ref_dir", "feedback_dir", "store", "store_dir", "run_dir", "ref_train_images",
        "ref_eval_images", "epochs", "imgsz", "batch", "deploy", "tolerance", "timeout_s",
    })
    task = pipeline.build_pipeline(settings)(job_id=job_id, settings=overrides)
    return str(task.output)


@pytest.mark.slow
def test_pipeline_promotes_a_good_candidate_and_stops_a_bad_one(
    settings: RetrainSettings, registry: Registry, local_kfp: Path,
) -> None:
    tiny = {"epochs": 1, "imgsz": 64, "batch": 4, "timeout_s": 300}
    good = settings.model_copy(update={**tiny, "tolerance": 1.0})
    job_id = queue_job(registry)
    assert _run(good, job_id) == "promote"

    job = registry.get_job(job_id)
    assert job.state == "succeeded" and "not deployed" in (job.reason or ""), job.reason
    assert job.parent == "1" and job.candidate_version == "2"
    assert set(job.metrics) == {"candidate", "current"}
    assert job.data["ref_train"] == 6 and job.data["ref_eval"] == 3
    v2 = registry.get("2")
    assert v2.parent == "1" and v2.status == "ready" and (good.store_dir / v2.mar).is_file()
    assert registry.load().default_version == "1", "RETRAIN_DEPLOY=false: the default stays"

    runs = sorted(p for p in local_kfp.iterdir() if p.is_dir())
    assert len(runs) == 1
    out = {f"{p.parent.name}/{p.name}": p for p in runs[0].glob("*/*")}
    assert (out["champion/champion"] / "weights.pt").stat().st_size > 1000
    assert (out["dataset/manifest"] / "data.yaml").is_file()
    assert (out["dataset/manifest"] / "eval.txt").read_text().strip()
    assert (out["fine-tune/candidate"] / "weights.pt").stat().st_size > 1000
    scores = json.loads(out["evaluate/metrics"].read_text())
    assert scores == job.metrics
    mar = out["package/mar"] / Path(v2.mar).name
    assert mar.stat().st_size == (good.store_dir / v2.mar).stat().st_size
    assert any(name.startswith("deploy/") for name in out), "promoted: deploy ran"

    # A bar no candidate can clear (mAP50 above current + 1): rejected, deploy never runs.
    bad = settings.model_copy(update={**tiny, "tolerance": -1.0})
    job_id = queue_job(registry)
    assert _run(bad, job_id) == "reject"
    job = registry.get_job(job_id)
    assert job.state == "rejected" and job.candidate_version == "3", job.reason
    assert registry.get("3").status == "rejected"
    runs = sorted((p for p in local_kfp.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    second = {f"{p.parent.name}/{p.name}" for p in runs[-1].glob("*/*")}
    assert "package/mar" in second
    assert not any(name.startswith("deploy") for name in second), "rejected: no deploy step"
    assert registry.load().default_version == "1"
