"""The retrain job as a Kubeflow pipeline: each step of ``yoloserve.retrain.steps`` a component.

Only this module imports ``kfp`` (the ``pipelines`` extra); the rest of the package reaches it
lazily (``PipelineLauncher``, ``make pipeline``). The graph, artifacts on the arrows::

    champion --Model(parent .pt)--> dataset --Dataset(manifest: data.yaml, lists)--> fine-tune
        --Model(candidate .pt)--> evaluate --Metrics--> gate --decision--> package --Model(.mar)
                                                          dsl.If(decision == "promote") --> deploy

Each component is a thin shell: it rebuilds ``RetrainSettings`` (the ``RETRAIN_*`` environment
of its pod, overridden by the run's ``settings`` parameter) and calls one ``run_*`` of
``yoloserve.retrain.pipeline_runtime``, which calls one step function under a deadline. KFP 2.17
has no per-task timeout in its SDK (``PipelineTask`` offers retries, resources, accelerators, no
timeout), so each step enforces its own with ``yoloserve.retrain.deadline.run_with_deadline``
(fine-tuning: ``RETRAIN_TIMEOUT_S``; every other step: ``RETRAIN_PIPELINE_STEP_TIMEOUT_S``).

The job record: a run carries the job id (``job_id``; a run started without one, e.g. a recurring
run, records a new job with trigger ``kfp``), and the steps write into it as the local job does.
A step that raises fails the run; the launcher then reports the job dead with the run's error,
and ``yoloserve.retrain.jobs`` marks it failed.

Example:
    $ python -m yoloserve.retrain.pipeline compile --out deploy/kubeflow/retrain-pipeline.yaml
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from yoloserve.retrain.pipeline_runtime import PROMOTE
from yoloserve.retrain.settings import RetrainSettings

PIPELINE_NAME = "yoloserve-retrain"
TASKS = ("champion", "dataset", "fine-tune", "evaluate", "gate", "package", "deploy")

# ------------------------------------------------------------------------- the components
# Their bodies are shipped as source into the component's container: imports stay inside.


def champion(settings: dict, job_id: str, champion: Output[Model]) -> str:
    from yoloserve.retrain.pipeline_runtime import run_champion

    return run_champion(settings, job_id, champion)


def dataset(settings: dict, job_id: str, champion: Input[Model],
                      manifest: Output[Dataset]) -> None:
    from yoloserve.retrain.pipeline_runtime import run_dataset

    run_dataset(settings, job_id, champion, manifest)


def fine_tune(settings: dict, manifest: Input[Dataset], champion: Input[Model],
                        candidate: Output[Model]) -> None:
    from yoloserve.retrain.pipeline_runtime import run_fine_tune

    run_fine_tune(settings, manifest, champion, candidate)


def evaluate(settings: dict, manifest: Input[Dataset], champion: Input[Model],
                       candidate: Input[Model], metrics: Output[Metrics]) -> None:
    from yoloserve.retrain.pipeline_runtime import run_evaluate

    run_evaluate(settings, manifest, champion, candidate, metrics)




def gate(settings: dict, job_id: str, champion: Input[Model], metrics: Input[Metrics],
         verdict: Output[Artifact]) -> str:
    # One plain output (the decision): KFP's local runner resolves `dsl.If` on `<task>-Output`.
    from yoloserve.retrain.pipeline_runtime import run_gate

    return run_gate(settings, job_id, champion, metrics, verdict)


def package(settings: dict, job_id: str, decision: str, verdict: Input[Artifact],
                      champion: Input[Model], manifest: Input[Dataset], candidate: Input[Model],
                      metrics: Input[Metrics], mar: Output[Model]) -> str:
    from yoloserve.retrain.pipeline_runtime import run_package

    return run_package(settings, job_id, decision, verdict, champion, manifest, candidate,
                       metrics, mar)


def deploy(settings: dict, job_id: str, version: str, verdict: Input[Artifact],
                     champion: Input[Model]) -> str:
    from yoloserve.retrain.pipeline_runtime import run_deploy

    return run_deploy(settings, job_id, version, verdict, champion)


# ------------------------------------------------------------------------------ the pipeline

# (cpu request, memory request) per task; fine-tuning also gets a GPU when RETRAIN_PIPELINE_GPU.
RESOURCES = {
    "champion": ("500m", "1Gi"),
    "dataset": ("500m", "1Gi"),
    "fine-tune": ("4", "8Gi"),
    "evaluate": ("2", "4Gi"),
    "gate": ("250m", "512Mi"),
    "package": ("1", "2Gi"),
    "deploy": ("250m", "512Mi"),
}


def build_pipeline(settings: RetrainSettings | None = None) -> Any:
    """The pipeline function, its components on ``RETRAIN_PIPELINE_IMAGE``."""
    settings = settings or RetrainSettings()

    def component(fn: Callable[..., Any]) -> Any:
        # The trainer image carries the project and kfp (the `pipelines` extra): nothing to pip.
        return dsl.component(
            fn, base_image=settings.pipeline_image, install_kfp_package=False)

    ops: dict[str, Any] = {name: component(fn) for name, fn in zip(TASKS, (  # type: ignore[arg-type]
        champion, dataset, fine_tune, evaluate,
        gate, package, deploy,
    ), strict=True)}

    def configure(task: Any, name: str) -> Any:
        cpu, memory = RESOURCES[name]
        task.set_display_name(name).set_cpu_request(cpu).set_memory_request(memory)
        if settings.pipeline_retries:
            task.set_retry(num_retries=settings.pipeline_retries, backoff_duration="30s")
        if name == "fine-tune" and settings.pipeline_gpu:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        # The steps read and write the platform's volumes at the paths the gateway's `settings`
        # name (platform config: a cluster mounts them, the local runner ignores it).
        for pvc, mount_path in settings.pipeline_volumes.items():
            kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=mount_path)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description="Fine-tune the serving YOLO model on feedback, "
                  "gate it against the serving one on the same held-out set, deploy if it holds")
    def retrain(job_id: str = "", settings: dict = {}) -> str:  # noqa: B006 (a KFP default)
        champion = configure(ops["champion"](settings=settings, job_id=job_id), "champion")
        job = champion.outputs["Output"]
        data = configure(ops["dataset"](settings=settings, job_id=job,
                                        champion=champion.outputs["champion"]), "dataset")
        tuned = configure(ops["fine-tune"](
            settings=settings, manifest=data.outputs["manifest"],
            champion=champion.outputs["champion"]), "fine-tune")
        scored = configure(ops["evaluate"](
            settings=settings, manifest=data.outputs["manifest"],
            champion=champion.outputs["champion"], candidate=tuned.outputs["candidate"]),
            "evaluate")
        decided = configure(ops["gate"](settings=settings, job_id=job,
                                        champion=champion.outputs["champion"],
                                        metrics=scored.outputs["metrics"]), "gate")
        packaged = configure(ops["package"](
            settings=settings, job_id=job, decision=decided.outputs["Output"],
            verdict=decided.outputs["verdict"], champion=champion.outputs["champion"],
            manifest=data.outputs["manifest"], candidate=tuned.outputs["candidate"],
            metrics=scored.outputs["metrics"]), "package")
        with dsl.If(decided.outputs["Output"] == PROMOTE, name="promote"):
            configure(ops["deploy"](settings=settings, job_id=job,
                                    version=packaged.outputs["Output"],
                                    verdict=decided.outputs["verdict"],
                                    champion=champion.outputs["champion"]), "deploy")
        return decided.outputs["Output"]  # type: ignore[no-any-return]

    return retrain


def compile_pipeline(out: Path, settings: RetrainSettings | None = None) -> Path:
    """Write the pipeline's spec (IR YAML) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings), str(out))
    return out


app = typer.Typer(add_completion=False, help="The retrain pipeline (Kubeflow Pipelines).")


@app.command("compile")
def compile_command(
    out: Path = typer.Option(Path("deploy/kubeflow/retrain-pipeline.yaml"), help="Spec file"),
) -> None:
    """Compile the pipeline to its YAML spec (images and GPU from ``RETRAIN_PIPELINE_*``)."""
    typer.echo(f"wrote {compile_pipeline(out)}")


@app.callback()
def main() -> None:
    """The retrain pipeline (Kubeflow Pipelines)."""


if __name__ == "__main__":
    app()
