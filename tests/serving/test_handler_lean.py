"""The handler needs no Ultralytics and no torchvision: it runs in an interpreter that refuses them.

Each runtime's export is staged as packaging lays out a ``.mar``, then a fresh interpreter whose
import system refuses ``ultralytics`` and ``torchvision`` imports the handler the way TorchServe's
worker does (its folder on ``sys.path``), loads the export and answers real photos. Its boxes must
equal Ultralytics' own ``predict`` on the ``.pt`` in this process (same classes, 0.5 px, 1e-3).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import assert_same_boxes
from yoloserve.modelserver.export import FLOAT_RUNTIMES, INT8_RUNTIMES
from yoloserve.modelserver.packaging import stage
from yoloserve.paths import SERVING_DIR
from yoloserve.training.dataset import write_split

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"

CONF = 0.05
KINDS = ("grey", "rgba", "exif_jpeg", "png")

WORKER = textwrap.dedent(
    """
    import importlib.abc, json, sys, uuid

    REFUSED = {"ultralytics", "torchvision"}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in REFUSED:
                raise ImportError(f"{name} is refused in this interpreter")
            return None

    sys.meta_path.insert(0, Refuse())
    serving_dir, model_dir, weights_name, conf = sys.argv[1:5]
    photos = sys.argv[5:]
    sys.path.insert(0, serving_dir)
    from ts.context import Context
    from ts.metrics.metrics_store import MetricsStore
    from ts.utils.util import get_yaml_config
    import handler

    config = get_yaml_config(model_dir + "/model-config.yaml")
    manifest = {"model": {"modelName": "yolo", "modelVersion": "1", "serializedFile": weights_name}}
    context = Context("yolo", model_dir, manifest, 4, None, "0.12.0",
                      metrics=MetricsStore(uuid.uuid4(), "yolo"), model_yaml_config=config)
    worker = handler.YoloHandler()
    worker.initialize(context)
    answers = [worker.handle([{"data": open(p, "rb").read(), "conf": conf}], context)[0]
               for p in photos]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in REFUSED)
    print(json.dumps({"answers": answers, "loaded": loaded}))
    """
)


def test_the_refusing_interpreter_refuses(tmp_path: Path) -> None:
    script = WORKER.split("sys.meta_path.insert(0, Refuse())")[0]
    script += "sys.meta_path.insert(0, Refuse())\nimport ultralytics\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0 and "ultralytics is refused" in proc.stderr


@pytest.mark.parametrize("runtime", FLOAT_RUNTIMES)
def test_each_float_runtime_answers_like_predict_without_ultralytics(
    runtime: str, default_weights: Path, tmp_path: Path, photos: dict[str, Path], reference: Any
) -> None:
    staged = stage(default_weights, runtime, tmp_path / "stage")
    paths = [str(photos[kind]) for kind in KINDS]
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(SERVING_DIR), str(staged.model_dir),
         default_weights.name, str(CONF), *paths],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert sum(len(answer["boxes"]) for answer in out["answers"]) > 0
    for kind, answer in zip(KINDS, out["answers"], strict=True):
        result = reference.predict(str(photos[kind]), imgsz=320, conf=CONF, verbose=False)[0]
        assert answer["image"] == {"width": result.orig_shape[1], "height": result.orig_shape[0]}
        assert_same_boxes(answer["boxes"], result)


@pytest.mark.parametrize("runtime", INT8_RUNTIMES)
def test_each_int8_runtime_runs_without_ultralytics(
    runtime: str, default_weights: Path, tmp_path: Path
) -> None:
    """An INT8 export's boxes are judged by its mAP gate (tests/yoloserve/modelserver/
    test_quantize.py), not by parity: here it only has to run in the lean interpreter and find
    the shapes of its own kind of scene."""
    write_split(tmp_path / "shapes", "train", 24, seed=0)
    calibration = sorted((tmp_path / "shapes" / "images" / "train").glob("*.jpg"))
    staged = stage(default_weights, runtime, tmp_path / "stage", calibration=calibration)
    scene = str(SAMPLES / "shapes_1.jpg")
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(SERVING_DIR), str(staged.model_dir),
         default_weights.name, "0.25", scene],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert {box["name"] for box in out["answers"][0]["boxes"]}, out["answers"][0]
