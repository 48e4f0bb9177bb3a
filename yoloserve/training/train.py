"""Train and evaluate YOLO models with Ultralytics, offline and on purpose about CPU threads.

Training from scratch builds the network from its yaml (never a hub name: nothing can be
downloaded); fine-tuning starts from existing weights. Evaluation returns plain floats so the
registry and the retrain gate can store and compare them.
"""

from __future__ import annotations

import json
import os
import time
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
    """
    configure_offline()
    from ultralytics import YOLO

    _use_all_cores()
    model = YOLO(str(weights) if weights else model_cfg)
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
) -> EvalMetrics:
    """Evaluate ``weights`` on ``split`` of ``data_yaml`` with Ultralytics' validator."""
    configure_offline()
    from ultralytics import YOLO

    _use_all_cores()
    model = YOLO(str(weights))
    # The returned metrics do not say how many images were judged; the validator does.
    seen: list[int] = []
    model.add_callback("on_val_end", lambda validator: seen.append(int(validator.seen or 0)))
    res = model.val(
        data=str(data_yaml),
        split=split,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        plots=False,
        verbose=False,
        workers=0,
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


def write_metrics(path: Path, metrics: EvalMetrics, **extra: Any) -> None:
    """Write metrics (and run facts such as epochs and wall time) as pretty JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**metrics.to_dict(), **extra, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime())}
    path.write_text(json.dumps(payload, indent=2) + "\n")
