"""A team's own data, end to end, as a user runs it on a running platform (its own TorchServe,
gateway and controller, so the class change touches no other test's stack):

1. a labelled COCO export (written by supervision's own writer from shapes on real photos,
   classes ball/crate/tent) imported with ``python -m scripts.datasets import``;
2. a model fine-tuned on it (``python -m scripts.train train --data``), redeployed with
   ``--replace-classes`` and answering its own classes through ``/predict``; the old version
   cannot be activated again (409);
3. feedback through the gateway, and a retrain (``POST /retrain``) that mixes the imported
   reference with that feedback;
4. the collected labels exported by ``GET /datasets/feedback/export`` and imported back to the
   boxes that were sent, a correction made before the class change with its own class names.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from tests.conftest import NEVER_K
from tests.integration.conftest import ADMIN_KEY, USER_KEY, Stack, start_gateway
from tests.integration.loop_support import retrain_env, trainer_running, wait_no_active_job
from tests.yoloserve.retrain.job_support import wait_final
from yoloserve import paths
from yoloserve.datasets import catalog
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.store.settings import StoreSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEAM = "team"
TEAM_CLASSES = ["ball", "crate", "tent"]
FEEDBACKS = 4


@pytest.fixture(scope="module")
def team_stack(tmp_path_factory: pytest.TempPathFactory, default_weights: Path
               ) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("team-stack"), weights=default_weights,
                         user_key=USER_KEY, admin_key=ADMIN_KEY,
                         extra_env={"RETRAIN_EVERY_K": str(NEVER_K)})
    try:
        stack.start_torchserve(300)
        start_gateway(stack)
        stack.start_trainer(timeout=90)
        yield stack
    finally:
        stack.stop()


def cli(stack: Stack, module: str, *args: str, timeout: float = 600) -> str:
    """Run ``python -m module args`` as the stack's operator would; its output."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=paths.ROOT,
                          env={**stack.environment(0), "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{module} {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def pixel_boxes(dataset: Path, image: Path) -> list[tuple[list[float], str]]:
    """An imported image's ground truth in pixels, from its YOLO label."""
    names = yaml.safe_load((dataset / "data.yaml").read_text())["names"]
    with Image.open(image) as opened:
        width, height = opened.size
    label = dataset / "labels" / image.parent.name / f"{image.stem}.txt"
    out = []
    for line in label.read_text().splitlines():
        cls, cx, cy, w, h = line.split()
        x, y = float(cx) * width, float(cy) * height
        bw, bh = float(w) * width, float(h) * height
        out.append(([x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2], names[int(cls)]))
    return sorted(out, key=lambda b: (b[1], b[0]))


def test_import_train_serve_retrain_and_export_a_teams_dataset(
    team_stack: Stack, tmp_path: Path
) -> None:
    stack = team_stack
    gateway = httpx.Client(base_url=stack.gateway_url, timeout=120)
    admin = {"X-API-Key": ADMIN_KEY}

    # 1. Their data, as supervision writes COCO, imported (and made the reference).
    cli(stack, "scripts.datasets", "sample", str(tmp_path / "coco"), "--format", "coco",
        "--images", "40", "--seed", "3")
    out = cli(stack, "scripts.datasets", "import", str(tmp_path / "coco" / "annotations.json"),
              "--format", "coco", "--name", TEAM, "--val", "0.2", "--test", "0.1")
    assert "team is the reference dataset" in out
    dataset = stack.data_dir / "datasets" / TEAM
    assert yaml.safe_load((dataset / "data.yaml").read_text())["names"] == dict(
        enumerate(TEAM_CLASSES))
    ref_rows = (stack.data_dir / "ref_data.csv").read_text().splitlines()
    assert {row.rsplit(",", 1)[1] for row in ref_rows[1:]} <= set(TEAM_CLASSES)

    # Before: one correction of the shipped model (its classes), as a running platform has.
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    shapes_truth = [([20.0, 30.0, 120.0, 140.0], "triangle")]
    old = gateway.post("/feedback", headers={"X-API-Key": USER_KEY},
                       files={"file": (sample.name, sample.read_bytes())},
                       data={"labels": json.dumps({"boxes": [
                           {"xyxy": xyxy, "name": name} for xyxy, name in shapes_truth]})})
    assert old.status_code == 201, old.text

    # 2. Fine-tuned from the shipped weights into models/team, then served in place of them.
    cli(stack, "scripts.train", "train", "--data", str(dataset), "--epochs", "2", "--batch",
        "8", "--runs", str(tmp_path / "runs"))
    weights = stack.models_dir / TEAM / "best.pt"
    assert weights.is_file()
    first = stack.registry.load().default_version
    out = cli(stack, "scripts.models", "redeploy", "--weights", str(weights), "--runtime",
              "onnx", "--replace-classes")
    served = stack.registry.load()
    assert served.classes == TEAM_CLASSES and served.default_version != first
    assert f"version {served.default_version} serves now" in out
    models = gateway.get("/models").json()
    assert models["classes"] == TEAM_CLASSES
    refused = gateway.post(f"/models/{first}/activate", headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "version_classes_differ"

    # 3. Predictions in their classes; their corrections as feedback.
    sent: dict[str, list[tuple[list[float], str]]] = {old.json()["feedback_id"]: shapes_truth}
    for image in sorted((dataset / "images" / "val").iterdir())[:FEEDBACKS]:
        predicted = gateway.post("/predict", files={"file": (image.name, image.read_bytes())})
        assert predicted.status_code == 200, predicted.text
        assert predicted.headers["X-Model-Version"] == served.default_version
        assert {b["name"] for b in predicted.json()["boxes"]} <= set(TEAM_CLASSES)
        truth = pixel_boxes(dataset, image)
        labels = {"request_id": predicted.json()["request_id"],
                  "boxes": [{"xyxy": xyxy, "name": name} for xyxy, name in truth]}
        answer = gateway.post("/feedback", headers={"X-API-Key": USER_KEY},
                              files={"file": (image.name, image.read_bytes())},
                              data={"labels": json.dumps(labels)})
        assert answer.status_code == 201, answer.text
        sent[answer.json()["feedback_id"]] = truth

    settings = RetrainSettings(
        epochs=1, imgsz=320, batch=8, ref_train_images=16, ref_eval_images=4, tolerance=1.0,
        timeout_s=900, drain_s=1.0, feedback_dir=stack.data_dir / "feedback",
        store=StoreSettings(database_url=stack.registry.store.url), store_dir=stack.store_dir,
        run_dir=stack.run_dir,
    )
    assert settings.ref_dir is None, "the store's reference is what a retrain mixes in"
    with trainer_running(stack, retrain_env(settings)):
        started = gateway.post("/retrain", headers=admin)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        job = wait_final(stack.registry, job_id, timeout=900)
        log = job_log(settings, job_id).read_text(errors="replace")
        assert job.state == "succeeded", f"{job.reason}\n{log[-3000:]}"
        assert job.data["ref_train"] == 16 and job.data["feedback_train"] >= 1
        # The correction made under the old classes is not mixed in (its indices mean others).
        assert job.data["feedback_train"] + job.data["feedback_eval"] == FEEDBACKS
        [manifest] = stack.run_dir.glob(f"retrain/{job_id}/**/dataset_manifest.json")
        listed = [f["image"] for f in json.loads(manifest.read_text())["files"]]
        assert sum(f"/datasets/{TEAM}/images/train/" in f for f in listed) == 16, listed[:3]
        wait_no_active_job(stack.registry)
    assert stack.registry.load().classes == TEAM_CLASSES

    # 4. What was collected, exported by the gateway and imported back: the boxes sent.
    assert gateway.get("/datasets/feedback/export?format=coco").status_code == 401
    exported = gateway.get("/datasets/feedback/export?format=coco", headers=admin)
    assert exported.status_code == 200, exported.text
    (tmp_path / "export.zip").write_bytes(exported.content)
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        archive.extractall(tmp_path / "export")
    cli(stack, "scripts.datasets", "import", str(tmp_path / "export" / "annotations.json"),
        "--format", "coco", "--name", "collected", "--val", "0.25", "--test", "0",
        "--no-reference")
    back = stack.data_dir / "datasets" / "collected"
    # The team's classes first, then the old ones its first correction was made in.
    assert list(yaml.safe_load((back / "data.yaml").read_text())["names"].values()) == [
        *TEAM_CLASSES, "circle", "square", "triangle"]
    got = {image.stem: pixel_boxes(back, image) for image in (back / "images").glob("*/*")}
    assert sorted(got) == sorted(sent)
    for feedback_id, truth in sent.items():
        assert [n for _, n in got[feedback_id]] == [n for _, n in truth], feedback_id
        for (a, _), (b, _) in zip(got[feedback_id], truth, strict=True):
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 0.5, (a, b)
    # The reference stays the team's dataset (the re-import was --no-reference).
    reference = catalog.reference(stack.registry.store)
    assert reference is not None and reference.name == TEAM
