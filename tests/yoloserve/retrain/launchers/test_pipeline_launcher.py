"""``RETRAIN_LAUNCHER=pipeline`` (``launchers.pipeline.PipelineLauncher``) against a fake KFP
client: the run it submits (compiled spec, job id parameter, run name, experiment) and how run
states map to a job's liveness. The KFP client talks through ``kfp_server_api``'s own urllib3
stack (and calls the API in its constructor), so the fake replaces the client, not the network.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from yoloserve.errors import KubernetesError, RetrainAlreadyRunning
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.jobs import start_job_process
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.pipeline import PipelineLauncher, run_name
from yoloserve.retrain.settings import RetrainSettings

pytest.importorskip("kfp")


class FakeKfp:
    def __init__(self, runs: list[Any] | None = None, down: bool = False) -> None:
        self.runs = runs or []
        self.down = down
        self.submitted: list[dict[str, Any]] = []

    def list_runs(self, **kw: Any) -> Any:
        if self.down:
            raise ConnectionError("connection refused")
        return SimpleNamespace(runs=self.runs)

    def create_run_from_pipeline_package(self, pipeline_file: str, **kw: Any) -> Any:
        spec = next(yaml.safe_load_all(Path(pipeline_file).read_text()))  # then the platform spec
        self.submitted.append({"spec": spec, **kw})
        return SimpleNamespace(run_id="run-1")


def _run(job_id: str, state: str, error: str | None = None) -> Any:
    return SimpleNamespace(display_name=run_name(job_id), run_id=f"id-{job_id}", state=state,
                           error=SimpleNamespace(message=error) if error else None)


def test_the_setting_picks_the_pipeline_launcher() -> None:
    assert isinstance(launcher_from_settings(RetrainSettings(launcher="pipeline")),
                      PipelineLauncher)


def test_start_submits_the_compiled_pipeline_with_the_job_id(
    settings: RetrainSettings, registry: Registry
) -> None:
    fake = FakeKfp()
    settings = settings.model_copy(update={"pipeline_image": "img:1", "kfp_experiment": "exp"})
    launcher = PipelineLauncher(settings, client_factory=lambda: fake)
    job_id = start_job_process(settings, trigger="api", registry=registry, launcher=launcher)

    (run,) = fake.submitted
    assert run["arguments"] == {"job_id": job_id}
    assert run["run_name"] == f"yoloserve-retrain-{job_id}" and run["experiment_name"] == "exp"
    assert run["spec"]["pipelineInfo"]["name"] == "yoloserve-retrain"
    images = {e["container"]["image"] for e in run["spec"]["deploymentSpec"]["executors"].values()}
    assert images == {"img:1"}
    assert registry.get_job(job_id).state == "queued"


def test_an_active_run_refuses_a_second_job(settings: RetrainSettings, registry: Registry) -> None:
    fake = FakeKfp([_run("r-0099", "RUNNING")])
    launcher = PipelineLauncher(settings, client_factory=lambda: fake)
    with pytest.raises(RetrainAlreadyRunning, match="yoloserve-retrain-r-0099"):
        start_job_process(settings, trigger="api", registry=registry, launcher=launcher)
    assert fake.submitted == []


@pytest.mark.parametrize(("state", "expected"), [
    ("PENDING", "alive"), ("RUNNING", "alive"), ("PAUSED", "alive"), ("CANCELING", "alive"),
    ("SUCCEEDED", "dead"), ("FAILED", "dead"), ("CANCELED", "dead"), ("SKIPPED", "dead"),
])
def test_run_state_maps_to_liveness(state: str, expected: str) -> None:
    fake = FakeKfp([_run("r-0001", state, error="fine-tune: CUDA out of cheese")])
    seen = PipelineLauncher(RetrainSettings(), client_factory=lambda: fake).liveness(
        [RetrainJob(job_id="r-0001", state="running")])
    assert seen["r-0001"].state == expected
    if expected == "dead":
        assert state in seen["r-0001"].reason and "CUDA out of cheese" in seen["r-0001"].reason


def test_missing_run_and_unreachable_api() -> None:
    jobs = [RetrainJob(job_id="r-0001", state="queued"), RetrainJob(job_id="r-0002",
                                                                     state="running")]
    seen = PipelineLauncher(RetrainSettings(), client_factory=lambda: FakeKfp()).liveness(jobs)
    assert (seen["r-0001"].state, seen["r-0002"].state) == ("unstarted", "dead")
    down = PipelineLauncher(RetrainSettings(), client_factory=lambda: FakeKfp(down=True))
    assert {v.state for v in down.liveness(jobs).values()} == {"alive"}, "nothing reaped blind"
    with pytest.raises(KubernetesError, match="cannot list runs"):
        down.running_elsewhere()
