"""Train and evaluate YOLO models with Ultralytics, offline and on purpose about CPU threads.

Training from scratch builds the network from its yaml (never a hub name: nothing can be
downloaded); fine-tuning starts from existing weights. Evaluation returns plain floats so the
registry and the retrain gate can store and compare them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yoloserve.offline import configure_offline


@dataclass
class EvalMetrics:
    """Detection quality on one split, plus Ultralytics' per-image speed in ms."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    speed_ms: dict[str, float] = field(default_factory=dict)
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_threads() -> int:
    """Threads for torch on this machine: all cores, unless YOLOSERVE_THREADS says otherwise."""
    return int(os.environ.get("YOLOSERVE_THREADS", os.cpu_count() or 1))


def _use_all_cores() -> None:
    # Ultralytics' select_device() sets torch to min(8, cpu_count - 1) threads: 1 on a 2-core box.
    import torch
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = cpu_threads()  # type: ignore[attr-defined]
    torch.set_num_threads(cpu_threads())


def train(
    data_yaml: Path,
    out_dir: Path,
    *,
    weights: Path | None = None,
    model_cfg: str = "yolov8n.yaml",
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 16,
    seed: int = 0,
    patience: int = 100,
    lr0: float | None = None,
    optimizer: str | None = None,
    warmup_epochs: float | None = None,
    name: str = "train",
    callbacks: Mapping[str, Callable[[Any], None]] | None = None,
) -> Path:
    """Train (from ``model_cfg``) or fine-tune (from ``weights``) and return the best weights.

    Args:
        data_yaml: Ultralytics dataset file.
        out_dir: folder for the run (weights, results.csv).
        weights: start from these weights (fine-tune); ``None`` trains from scratch.
        model_cfg: architecture yaml used when training from scratch.
        epochs, imgsz, batch, seed, patience, lr0: Ultralytics training arguments.
        optimizer, warmup_epochs: Ultralytics arguments too; ``None`` keeps its defaults. Note
            that with ``optimizer="auto"`` (its default) Ultralytics ignores ``lr0``.
        name: run name under ``out_dir``.
        callbacks: extra Ultralytics callbacks (event -> function), e.g. per-epoch tracking.
    """
    configure_offline()
    from ultralytics import YOLO

    _use_all_cores()
    _no_integration_mlflow()
    model = YOLO(str(weights) if weights else model_cfg)
    for event, function in (callbacks or {}).items():
        model.add_callback(event, function)
    given = {"lr0": lr0, "optimizer": optimizer, "warmup_epochs": warmup_epochs}
    extra: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        workers=2,
        seed=seed,
        deterministic=True,
        patience=patience,
        project=str(out_dir.resolve()),
        name=name,
        exist_ok=True,
        amp=False,  # the AMP check downloads yolo11n.pt; CPU training has no AMP anyway
        plots=False,  # plots need a font from the internet
        verbose=False,
        **extra,
    )
    best = out_dir / name / "weights" / "best.pt"
    if not best.exists():
        raise RuntimeError(f"training produced no weights at {best}")
    return best


def evaluate(
    weights: Path,
    data_yaml: Path,
    *,
    split: str = "test",
    imgsz: int = 320,
    batch: int = 16,
    plots_dir: Path | None = None,
) -> EvalMetrics:
    """Evaluate ``weights`` on ``split`` of ``data_yaml`` with Ultralytics' validator.

    Args:
        plots_dir: also keep Ultralytics' PR curve and confusion matrix images there.
    """
    configure_offline()
    from ultralytics import YOLO

    _use_all_cores()
    model = YOLO(str(weights))
    # The returned metrics do not say how many images were judged; the validator does.
    seen: list[int] = []
    model.add_callback("on_val_end", lambda validator: seen.append(int(validator.seen or 0)))
    if plots_dir is not None:
        model.add_callback("on_val_start", _curves_only)
    where: dict[str, Any] = {}
    if plots_dir is not None:
        where = {"project": str(plots_dir.parent.resolve()), "name": plots_dir.name,
                 "exist_ok": True}
    res = model.val(
        data=str(data_yaml),
        split=split,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        plots=plots_dir is not None,
        verbose=False,
        workers=0,
        **where,
    )
    names: dict[int, str] = res.names
    per_class: dict[str, dict[str, float]] = {}
    for i, c in enumerate(res.box.ap_class_index):
        p, r, ap50, ap = res.box.class_result(i)
        per_class[names[int(c)]] = {
            "precision": float(p),
            "recall": float(r),
            "map50": float(ap50),
            "map50_95": float(ap),
        }
    return EvalMetrics(
        map50=float(res.box.map50),
        map50_95=float(res.box.map),
        precision=float(res.box.mp),
        recall=float(res.box.mr),
        per_class=per_class,
        speed_ms={k: float(v) for k, v in res.speed.items()},
        images=seen[-1] if seen else 0,
    )


def _no_integration_mlflow() -> None:
    # Ultralytics' own MLflow callback would open a second run per training whenever
    # MLFLOW_TRACKING_URI is set; yoloserve.tracking logs the job's one run instead.
    from ultralytics.utils.callbacks import mlflow as ultralytics_mlflow

    ultralytics_mlflow.callbacks.clear()


def _curves_only(validator: Any) -> None:
    # The batch mosaics draw labels with a font Ultralytics downloads; the curves and the
    # confusion matrix are matplotlib only, and are what a run's record needs.
    validator.plot_val_samples = lambda *a, **k: None
    validator.plot_predictions = lambda *a, **k: None


def write_metrics(path: Path, metrics: EvalMetrics, **extra: Any) -> None:
    """Write metrics (and run facts such as epochs and wall time) as pretty JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**metrics.to_dict(), **extra, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime())}
    path.write_text(json.dumps(payload, indent=2) + "\n")
