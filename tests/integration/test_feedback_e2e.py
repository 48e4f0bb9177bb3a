"""Real TorchServe + real gateway: feedback on a shipped sample lands in the stack's
``prod_data.csv`` with the reference columns, embedded by the same code as ``ref_data.csv``; and
feedback past k rows starts a retrain that the trainer service runs and swaps in."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import USER_KEY, Stack
from tests.integration.loop_support import (
    gateway_with,
    restore_default,
    retrain_env,
    torchserve_settings,
    trainer_running,
    wait_exported,
    wait_no_active_job,
)
from yoloserve import paths
from yoloserve.embeddings.embedder import Embedder
from yoloserve.feedback.matching import match
from yoloserve.feedback.store import PROD_EXTRA_COLUMNS, ref_header
from yoloserve.images import decode_array
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.settings import StoreSettings
from yoloserve.training.dataset import generate_dataset

pytestmark = pytest.mark.integration

AUTH = {"X-API-Key": USER_KEY}


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _reference_columns(dim: int) -> list[str]:
    """The columns of ``data/ref_data.csv`` (the repository's, when it was built)."""
    ref = paths.DATA_DIR / "ref_data.csv"
    if ref.is_file():
        with open(ref, newline="") as f:
            return next(csv.reader(f))
    return ref_header(dim)


def test_feedback_rows_land_in_prod_data(gateway: httpx.Client, stack: Stack) -> None:
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    image_bytes = sample.read_bytes()
    predicted = gateway.post("/predict", files={"file": (sample.name, image_bytes)}).json()
    pred = [(b["xyxy"], b["name"], b["conf"]) for b in predicted["boxes"]]
    classes = gateway.get("/models").json()["classes"]
    # The user corrects the class of the first box the model found, confirms the others, and
    # adds one it missed (whatever the quality of the shipped weights, rows are expected).
    boxes = [{"xyxy": b["xyxy"], "name": b["name"]} for b in predicted["boxes"]]
    if boxes:
        boxes[0]["name"] = next(c for c in classes if c != boxes[0]["name"])
    boxes.append({"xyxy": [4.0, 4.0, 44.0, 40.0], "name": classes[0]})
    # Same image, same default thresholds: the gateway's own prediction is the one above.
    expected = match([(b["xyxy"], b["name"]) for b in boxes], pred)
    prod = wait_exported(stack)
    before = len(_rows(prod)[1])

    response = gateway.post(
        "/feedback",
        headers=AUTH,
        files={"file": (sample.name, image_bytes)},
        data={"labels": json.dumps({"request_id": predicted["request_id"], "boxes": boxes})},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rows_written"] == len(expected)
    assert body["prod_rows_total"] == before + len(expected)
    assert body["retrain"]["next_at_rows"] > body["prod_rows_total"]
    assert response.headers["X-Model-Version"] == stack.first_version.version

    embedder = Embedder.load(stack.models_dir / "embedder" / "embedder.npz")
    header, rows = _rows(wait_exported(stack))
    assert header == [*_reference_columns(embedder.dim), *PROD_EXTRA_COLUMNS]
    mine = [r for r in rows if r["feedback_id"] == body["feedback_id"]]
    assert [(r["target"], r["prediction"]) for r in mine] == [
        (m.target, m.prediction) for m in expected
    ]
    assert {r["model_version"] for r in mine} == {stack.first_version.version}
    assert {r["request_id"] for r in mine} == {predicted["request_id"]}

    # The stored embeddings are what the reference data's code computes for these boxes.
    vectors = embedder.embed(decode_array(image_bytes), [m.xyxy for m in expected])
    stored = np.array([[float(r[f"emb_{i}"]) for i in range(embedder.dim)] for r in mine])
    np.testing.assert_allclose(stored, vectors, rtol=1e-5, atol=1e-6)

    image = stack.data_dir / mine[0]["image"]
    label = stack.data_dir / "feedback" / "labels" / f"{body['feedback_id']}.txt"
    assert image.read_bytes() == image_bytes
    assert [int(line.split()[0]) for line in label.read_text().splitlines()] == [
        classes.index(b["name"]) for b in boxes
    ]


def test_bad_feedback_writes_nothing(gateway: httpx.Client, stack: Stack) -> None:
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    prod = wait_exported(stack)
    before = len(_rows(prod)[1])
    files = {"file": (sample.name, sample.read_bytes())}
    unknown = {"labels": json.dumps({"boxes": [{"xyxy": [1, 1, 20, 20], "name": "hexagon"}]})}

    assert gateway.post("/feedback", files=files, data=unknown).status_code == 401
    response = gateway.post("/feedback", headers=AUTH, files=files, data=unknown)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_class"
    response = gateway.post("/feedback", headers=AUTH, files=files, data={"labels": "{"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"

    assert len(_rows(wait_exported(stack))[1]) == before
    assert gateway.get("/retrain/r-9999").json()["error"]["code"] == "unknown_job"


def _maps_torch(pid: int) -> bool:
    """Whether process ``pid`` has loaded libtorch (the gateway never may)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
def test_feedback_past_k_rows_retrains_in_the_trainer_and_swaps(
    stack: Stack, tmp_path: Path
) -> None:
    """The loop as `make demo` runs it: the gateway queues, the trainer service trains, the new
    version serves. Kept small as test_retrain_job (1 epoch, 16 reference images)."""
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    ref = tmp_path / "shapes"
    generate_dataset(ref, n_train=16, n_val=8, n_test=0, seed=23)
    settings = RetrainSettings(
        epochs=1, imgsz=320, batch=8, ref_train_images=16, ref_eval_images=8,
        tolerance=1.0, timeout_s=900, drain_s=1.0, launcher="queue",
        ref_dir=ref, feedback_dir=stack.data_dir / "feedback",
        store=StoreSettings(database_url=registry.store.url), store_dir=stack.store_dir,
        run_dir=stack.run_dir,
        torchserve=torchserve_settings(stack),
    )
    rows = len(_rows(wait_exported(stack))[1])
    # The next feedback crosses k whatever the rows earlier tests left.
    gateway_env = {"RETRAIN_LAUNCHER": "queue", "RETRAIN_EVERY_K": str(rows + 1)}
    sample = stack.data_dir / "samples" / "shapes_2.jpg"
    image = sample.read_bytes()
    try:
        with trainer_running(stack, retrain_env(settings)), gateway_with(stack, gateway_env):
            started = time.monotonic()
            with httpx.Client(base_url=stack.gateway_url, timeout=60, headers=AUTH) as http:
                predicted = http.post("/predict", files={"file": (sample.name, image)}).json()
                boxes = [{"xyxy": b["xyxy"], "name": b["name"]} for b in predicted["boxes"]]
                boxes.append({"xyxy": [4.0, 4.0, 44.0, 40.0], "name": "circle"})
                answer = http.post("/feedback", files={"file": (sample.name, image)},
                                   data={"labels": json.dumps({"boxes": boxes})})
                assert answer.status_code == 201, answer.text
                retrain = answer.json()["retrain"]
                assert retrain["triggered"], retrain
                job_id = retrain["job_id"]
                deadline = time.monotonic() + 900
                while (job := http.get(f"/retrain/{job_id}").json())["state"] in (
                    "queued", "running"
                ):
                    assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
                    time.sleep(1)
                wall_s = time.monotonic() - started
                assert job["state"] == "succeeded", f"{job}\n{stack.trainer_log()}"
                new = job["candidate_version"]
                served = http.post("/predict", files={"file": (sample.name, image)})
                assert served.status_code == 200
                assert served.headers["X-Model-Version"] == new != first

            record = registry.get_job(job_id)
            gateway_pid = stack.supervisor.pid("gateway")
            assert record.trigger == "feedback" and record.parent == first
            assert record.pid == stack.trainer_pid() != gateway_pid, "the trainer ran it"
            assert gateway_pid is not None and not _maps_torch(gateway_pid)
            assert f"job {job_id}: claimed by" in stack.trainer_log()
            print(f"\nfeedback -> retrain {job_id} in the trainer -> v{new} serving: "
                  f"{wall_s:.0f} s")
    finally:
        wait_no_active_job(registry)
        restore_default(stack, first)
