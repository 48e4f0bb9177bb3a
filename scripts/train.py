"""Generate the synthetic shapes dataset and train the default model, offline.

    python -m scripts.train --help
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

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


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="data.yaml; generated if missing.")] = paths.DATA_DIR
    / "shapes"
    / "data.yaml",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 30,
    imgsz: Annotated[int, typer.Option(help="Training/inference image size.")] = 320,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    weights: Annotated[Path | None, typer.Option(help="Fine-tune from these weights.")] = None,
    runs: Annotated[Path, typer.Option(help="Where Ultralytics writes the run.")] = paths.RUN_DIR
    / "train",
    install: Annotated[bool, typer.Option(help="Copy best.pt + metrics into models/default.")] = (
        True
    ),
) -> None:
    """Train (or fine-tune), evaluate on the held-out test split, and install as the default.

    With MLFLOW_TRACKING_URI set, the whole run is an MLflow run (params, per-epoch metrics, the
    dataset manifest, test metrics, plots, best.pt); installing records its id in metrics.json,
    and the version packaged from these weights links to it.
    """
    if not data.exists():
        dataset_cmd(out=data.parent)
    tracker = RunTracker.start(TrackingSettings(), paths.RUN_DIR, name="train default model",
                               tags={"yoloserve.kind": "train"})
    files = manifest.dataset_manifest(data)
    tracker.params(epochs=epochs, imgsz=imgsz, batch=batch, model_cfg="yolov8n.yaml",
                   fine_tuned_from=str(weights) if weights else None,
                   **{f"data.{k}": v["images"] for k, v in files["splits"].items()},
                   **{"data.manifest_sha256": files["sha256"]})
    tracker.artifact(manifest.write_manifest(files, runs / "dataset_manifest.json"), "dataset")
    t0 = time.monotonic()
    best = train(data, runs, weights=weights, epochs=epochs, imgsz=imgsz, batch=batch,
                 callbacks=epoch_callbacks(tracker) if tracker.active else None)
    train_s = time.monotonic() - t0
    metrics = evaluate(best, data, split="test", imgsz=imgsz, plots_dir=runs / "plots")
    test_set = manifest.eval_set(manifest.BENCHMARK_NAME, files, "test")
    typer.echo(f"test mAP50={metrics.map50:.3f} mAP50-95={metrics.map50_95:.3f} "
               f"P={metrics.precision:.3f} R={metrics.recall:.3f} ({train_s:.0f} s training)")
    tracker.metrics({"test": metrics.to_dict(), "train_seconds": train_s})
    tracker.params(eval_set=test_set)
    tracker.artifact(best, "weights")
    tracker.artifact(runs / "plots", "plots")
    if install:
        paths.DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, paths.DEFAULT_WEIGHTS)
        write_metrics(paths.DEFAULT_METRICS, metrics, split="test", epochs=epochs, imgsz=imgsz,
                      batch=batch, train_seconds=round(train_s, 1),
                      fine_tuned_from=str(weights) if weights else None, eval_set=test_set,
                      mlflow_run_id=tracker.run_id, mlflow_experiment_id=tracker.experiment_id)
        typer.echo(f"installed {paths.DEFAULT_WEIGHTS}")
    tracker.end()


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
