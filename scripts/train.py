"""Generate the synthetic shapes dataset and train the default model, offline.

    python -m scripts.train --help
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID

from yoloserve import paths
from yoloserve.tracking import manifest
from yoloserve.tracking.callbacks import epoch_callbacks
from yoloserve.tracking.runs import RunTracker
from yoloserve.tracking.settings import TrackingSettings
from yoloserve.training.dataset import generate_dataset
from yoloserve.training.train import evaluate, train, write_metrics

app = typer.Typer(add_completion=False, help=__doc__)


@app.command("dataset")
def dataset_cmd(
    out: Annotated[Path, typer.Option(help="Dataset folder (YOLO layout).")] = paths.DATA_DIR
    / "shapes",
    n_train: Annotated[int, typer.Option(help="Training images.")] = 800,
    n_val: Annotated[int, typer.Option(help="Validation images (used for best.pt choice).")] = 150,
    n_test: Annotated[int, typer.Option(help="Held-out test images (reported metrics).")] = 150,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same images.")] = 0,
    background: Annotated[str, typer.Option(help="synthetic | photo (the drift shift).")] = (
        "synthetic"
    ),
) -> None:
    """Write a seeded synthetic dataset and its data.yaml."""
    total = n_train + n_val + n_test
    with Progress() as bar:
        task = bar.add_task(f"drawing {total} images", total=total)
        yaml_path = generate_dataset(
            out, n_train, n_val, n_test, seed=seed, background=background,  # type: ignore[arg-type]
            progress=lambda k: bar.advance(task, k),
        )
    typer.echo(f"dataset: {yaml_path}")


def _data_yaml(data: Path) -> Path:
    """``data`` as a ``data.yaml``: a dataset folder (an imported one) names its own."""
    return data / "data.yaml" if data.is_dir() else data


def _install_dir(data_yaml: Path, name: str | None) -> Path:
    """``models/<name>``: the shipped model's folder only for the shipped synthetic dataset.

    A team's model must not overwrite ``models/default`` (the shipped weights, in git): it goes
    beside it, named after its dataset, and ``make package WEIGHTS=...`` takes it from there.
    """
    if name is None:
        shipped = (paths.DATA_DIR / "shapes").resolve()
        name = "default" if data_yaml.parent.resolve() == shipped else data_yaml.parent.name
    return paths.MODELS_DIR / name


def _with_epoch_bar(
    callbacks: dict[str, Callable[[Any], None]], bar: Progress, task: TaskID
) -> dict[str, Callable[[Any], None]]:
    """``callbacks`` plus one that moves the epoch bar after each epoch's validation."""
    logged = callbacks.get("on_fit_epoch_end")

    def on_fit_epoch_end(trainer: Any) -> None:
        if logged is not None:
            logged(trainer)
        fitness = (trainer.metrics or {}).get("metrics/mAP50(B)")
        bar.update(task, completed=int(trainer.epoch) + 1,
                   description=f"training (val mAP50 {fitness:.3f})" if fitness is not None
                   else "training")

    return {**callbacks, "on_fit_epoch_end": on_fit_epoch_end}


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(
        help="data.yaml, or a dataset folder holding one (an imported dataset: "
        "data/datasets/<name>); the synthetic one is generated if missing.")] = paths.DATA_DIR
    / "shapes"
    / "data.yaml",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 30,
    imgsz: Annotated[int, typer.Option(help="Training/inference image size.")] = 320,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    weights: Annotated[Path | None, typer.Option(
        "--weights", "--from",
        help="Start from these weights (your own .pt: fine-tune), or from a model YAML "
        "(yolov8n.yaml, yolo11s.yaml...: from scratch). Unset: yolov8n.yaml for the synthetic "
        "dataset, the shipped model's weights for another (its backbone transfers).")] = None,
    runs: Annotated[Path | None, typer.Option(
        help="Where Ultralytics writes the run (default .run/train/<name>).")] = None,
    name: Annotated[str | None, typer.Option(
        help="Install under models/<name> (default: 'default' for the synthetic dataset, the "
        "dataset folder's name otherwise).")] = None,
    install: Annotated[bool, typer.Option(
        help="Copy best.pt + metrics.json into models/<name>.")] = True,
) -> None:
    """Train (or fine-tune), evaluate on the held-out split, and install under models/<name>.

    With MLFLOW_TRACKING_URI set, the whole run is an MLflow run (params, per-epoch metrics, the
    dataset manifest, test metrics, plots, best.pt); installing records its id in metrics.json,
    and the version packaged from these weights links to it. Then serve it:
    ``make redeploy WEIGHTS=models/<name>/best.pt``.
    """
    data_yaml = _data_yaml(data)
    if not data_yaml.exists():
        if data_yaml.parent.resolve() != (paths.DATA_DIR / "shapes").resolve():
            raise typer.BadParameter(f"{data_yaml} does not exist: import the dataset first "
                                     "(make import-dataset)", param_hint="--data")
        dataset_cmd(out=data_yaml.parent)
    target = _install_dir(data_yaml, name)
    runs = runs or paths.RUN_DIR / "train" / target.name
    model_cfg = "yolov8n.yaml"
    start: Path | None = weights
    if weights is not None and weights.suffix in {".yaml", ".yml"}:
        model_cfg, start = str(weights), None
    elif weights is None and target.name != "default":
        start = paths.DEFAULT_WEIGHTS
    if start is not None and not start.is_file():
        raise typer.BadParameter(f"{start} does not exist", param_hint="--weights")
    tracker = RunTracker.start(TrackingSettings(), paths.RUN_DIR,
                               name=f"train {target.name} model",
                               tags={"yoloserve.kind": "train", "yoloserve.dataset": target.name})
    files = manifest.dataset_manifest(data_yaml)
    # An import may have no test split (a source with train/val only): judge on val then.
    split = "test" if files["splits"]["test"]["images"] else "val"
    tracker.params(epochs=epochs, imgsz=imgsz, batch=batch, model_cfg=model_cfg,
                   fine_tuned_from=str(start) if start else None, data=str(data_yaml),
                   **{f"data.{k}": v["images"] for k, v in files["splits"].items()},
                   **{"data.manifest_sha256": files["sha256"]})
    tracker.artifact(manifest.write_manifest(files, runs / "dataset_manifest.json"), "dataset")
    t0 = time.monotonic()
    with Progress() as bar:
        task = bar.add_task("training", total=epochs)
        callbacks = epoch_callbacks(tracker) if tracker.active else {}
        best = train(data_yaml, runs, weights=start, model_cfg=model_cfg, epochs=epochs,
                     imgsz=imgsz, batch=batch, callbacks=_with_epoch_bar(callbacks, bar, task))
    train_s = time.monotonic() - t0
    metrics = evaluate(best, data_yaml, split=split, imgsz=imgsz, plots_dir=runs / "plots")
    set_name = manifest.BENCHMARK_NAME if target.name == "default" else f"{target.name}-{split}"
    test_set = manifest.eval_set(set_name, files, split)
    typer.echo(f"{split} mAP50={metrics.map50:.3f} mAP50-95={metrics.map50_95:.3f} "
               f"P={metrics.precision:.3f} R={metrics.recall:.3f} ({train_s:.0f} s training)")
    tracker.metrics({split: metrics.to_dict(), "train_seconds": train_s})
    tracker.params(eval_set=test_set)
    tracker.artifact(best, "weights")
    tracker.artifact(runs / "plots", "plots")
    if install:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, target / "best.pt")
        write_metrics(target / "metrics.json", metrics, split=split, epochs=epochs, imgsz=imgsz,
                      batch=batch, train_seconds=round(train_s, 1), data=str(data_yaml),
                      fine_tuned_from=str(start) if start else None, model_cfg=model_cfg,
                      eval_set=test_set, mlflow_run_id=tracker.run_id,
                      mlflow_experiment_id=tracker.experiment_id)
        typer.echo(f"installed {target / 'best.pt'}; serve it: "
                   f"make redeploy WEIGHTS={_shown(target / 'best.pt')}")
    tracker.end()


def _shown(path: Path) -> str:
    resolved = path.resolve()
    root = paths.ROOT.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


@app.command("evaluate")
def evaluate_cmd(
    weights: Annotated[Path, typer.Argument(help="Weights to evaluate.")],
    data: Annotated[Path, typer.Option(help="data.yaml.")] = paths.DATA_DIR / "shapes"
    / "data.yaml",
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    imgsz: Annotated[int, typer.Option(help="Image size.")] = 320,
) -> None:
    """Print mAP and per-class precision/recall of weights on a split."""
    m = evaluate(weights, data, split=split, imgsz=imgsz)
    typer.echo(m.to_dict())


if __name__ == "__main__":
    app()
