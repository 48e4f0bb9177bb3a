"""A real Label Studio (its own venv, ``devstack.labelstudio``) with the real gateway as its ML
backend: pre-labels from the served model, annotations back as feedback through the webhook.

The session's gateway is restarted with ``LABELSTUDIO_URL``/``LABELSTUDIO_API_KEY`` so it can
fetch the image Label Studio serves (``/data/upload/...``); everything else is Label Studio's
REST API as a user's scripts would call it. Label Studio installs once per machine (~60 s) and
starts in ~30 s.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from devstack.labelstudio import LabelStudioServer
from tests.integration.conftest import USER_KEY, Stack
from tests.integration.loop_support import gateway_with, wait_exported
from yoloserve.datasets.formats.base import ReadOptions
from yoloserve.datasets.importer import SplitPlan, import_dataset
from yoloserve.errors import DatasetInvalid
from yoloserve.store.engine import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def labelstudio() -> Iterator[LabelStudioServer]:
    started = time.monotonic()
    server = LabelStudioServer().start()
    print(f"Label Studio ready after {time.monotonic() - started:.0f} s "
          f"(start {server.start_s:.0f} s)")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway_for_ls(stack: Stack, labelstudio: LabelStudioServer) -> Iterator[str]:
    env = {"LABELSTUDIO_URL": labelstudio.url, "LABELSTUDIO_API_KEY": labelstudio.token}
    with gateway_with(stack, env):
        yield stack.gateway_url


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _wait(check: Any, timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return found


def _percent(box: list[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [100 * x1 / width, 100 * y1 / height, 100 * (x2 - x1) / width,
            100 * (y2 - y1) / height]


def test_label_studio_prelabels_and_its_annotations_become_feedback(
    stack: Stack, labelstudio: LabelStudioServer, gateway_for_ls: str, tmp_path: Path
) -> None:
    gw = httpx.Client(base_url=gateway_for_ls, timeout=120)
    ls = httpx.Client(base_url=labelstudio.url, headers=labelstudio.headers, timeout=120)
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    image = sample.read_bytes()

    config = gw.get("/labelstudio/config").text
    project = ls.post("/api/projects", json={"title": "yoloserve", "label_config": config})
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    imported = ls.post(f"/api/projects/{pid}/import",
                       files={"file": (sample.name, image, "image/jpeg")})
    assert imported.status_code == 201, imported.text
    (task,) = ls.get("/api/tasks", params={"project": pid}).json()["tasks"]
    assert task["data"]["image"].startswith("/data/upload/")

    # Connecting the backend: Label Studio asks /health and /setup, and adds the webhook
    # <url>/webhook, which gets the gateway's key in its headers.
    backend = ls.post("/api/ml", json={"project": pid, "url": f"{gateway_for_ls}/labelstudio",
                                       "title": "yoloserve", "is_interactive": False})
    assert backend.status_code == 201, backend.text
    state = ls.get(f"/api/ml/{backend.json()['id']}").json()
    assert state["state"] == "CO", state  # connected
    (hook,) = [h for h in ls.get("/api/webhooks", params={"project": pid}).json()
               if h["url"].endswith("/labelstudio/webhook")]
    patched = ls.patch(f"/api/webhooks/{hook['id']}", json={"headers": {"X-API-Key": USER_KEY}})
    assert patched.status_code == 200, patched.text

    # Pre-labels: Label Studio calls /labelstudio/predict; the boxes are /predict's.
    action = ls.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                 "project": pid},
                     json={"selectedItems": {"all": True, "excluded": []}})
    assert action.status_code == 200, action.text
    predictions = _wait(lambda: ls.get("/api/predictions", params={"task": task["id"]}).json(),
                        what="Label Studio's predictions")
    served = gw.post("/predict", files={"file": (sample.name, image)}).json()
    width, height = served["image"]["width"], served["image"]["height"]
    (prediction,) = predictions
    assert prediction["model_version"] == served["model"]["version"]
    regions = prediction["result"]
    assert len(regions) == len(served["boxes"]) > 0
    for region, box in zip(regions, served["boxes"], strict=True):
        value = region["value"]
        assert value["rectanglelabels"] == [box["name"]]
        assert [value[k] for k in ("x", "y", "width", "height")] == pytest.approx(
            _percent(box["xyxy"], width, height), abs=1e-6)
        assert (region["from_name"], region["to_name"]) == ("label", "image")

    # An annotation: the first box, corrected (moved 5 % right), through Label Studio's API.
    export = stack.data_dir / "prod_data.csv"
    before = len(_rows(export)) if export.exists() else 0
    corrected = {**regions[0], "value": {**regions[0]["value"],
                                         "x": regions[0]["value"]["x"] + 5}}
    corrected.pop("score", None)
    created = ls.post(f"/api/tasks/{task['id']}/annotations",
                      json={"result": [corrected], "lead_time": 3.0})
    assert created.status_code == 201, created.text
    annotation = created.json()
    rows = _wait(lambda: len(_rows(wait_exported(stack))) > before and _rows(export),
                 what="the webhook's rows")
    first = rows[before:]
    assert any(r["target"] == box_name for r in first
               for box_name in [served["boxes"][0]["name"]])
    assert {r["model_version"] for r in first} == {served["model"]["version"]}
    after_create = len(rows)

    # An update is a new correction.
    relabelled = {**corrected, "value": {**corrected["value"], "x": corrected["value"]["x"] + 1}}
    updated = ls.patch(f"/api/annotations/{annotation['id']}", json={"result": [relabelled]})
    assert updated.status_code == 200, updated.text
    rows = _wait(lambda: len(_rows(wait_exported(stack))) > after_create and _rows(export),
                 what="the update's rows")
    after_update = len(rows)
    assert {r["feedback_id"] for r in rows[after_create:]}.isdisjoint(
        {r["feedback_id"] for r in first})

    # Label Studio retrying the same event (same annotation, same updated_at): nothing new.
    current = ls.get(f"/api/annotations/{annotation['id']}").json()
    replay = {"action": "ANNOTATION_UPDATED", "annotation": current,
              "task": ls.get(f"/api/tasks/{task['id']}").json(),
              "project": ls.get(f"/api/projects/{pid}").json()}
    again = gw.post("/labelstudio/webhook", json=replay, headers={"X-API-Key": USER_KEY})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "replayed"
    time.sleep(1.0)
    assert len(_rows(wait_exported(stack))) == after_update

    # Label Studio's own JSON export (a file its tool wrote, not ours) imports with the
    # importer to the boxes annotated: a second task first, so that train and val both fill.
    second = stack.data_dir / "samples" / "shapes_2.jpg"
    added = ls.post(f"/api/projects/{pid}/import",
                    files={"file": (second.name, second.read_bytes(), "image/jpeg")})
    assert added.status_code == 201, added.text
    task2 = max(ls.get("/api/tasks", params={"project": pid}).json()["tasks"],
                key=lambda t: t["id"])
    with Image.open(second) as opened:
        size2 = opened.size
    region2 = {**corrected, "id": "second", "original_width": size2[0],
               "original_height": size2[1],
               "value": {**corrected["value"], "x": 10, "y": 20, "width": 30, "height": 25}}
    assert ls.post(f"/api/tasks/{task2['id']}/annotations",
                   json={"result": [region2]}).status_code == 201
    uploads = labelstudio.dir / "media" / "upload" / str(pid) if labelstudio.dir else None
    assert uploads is not None

    def import_export(name: str) -> Any:
        exported = ls.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        assert exported.status_code == 200, exported.text
        (tmp_path / f"{name}.json").write_bytes(exported.content)
        return import_dataset(
            tmp_path / f"{name}.json", "labelstudio", name, Store.sqlite(tmp_path / "s.db"),
            tmp_path / "data", plan=SplitPlan(val=0.5, test=0.0),
            options=ReadOptions(images_dir=uploads))

    # Label Studio's API took the corrected box although it now ends past the image's right
    # edge (the gateway clipped it as feedback); the importer reports it, imports nothing.
    assert relabelled["value"]["x"] + relabelled["value"]["width"] > 100
    with pytest.raises(DatasetInvalid) as raised:
        import_export("from-ls-outside")
    (problem,) = raised.value.problems
    assert problem.kind == "box_outside_image" and "506x587" in problem.detail  # shapes_1
    assert not (tmp_path / "data" / "datasets" / "from-ls-outside").exists()

    # Corrected inside the image, in Label Studio: now it imports, to that box.
    inside = {**relabelled, "value": {**relabelled["value"], "x": 40.0, "y": 30.0,
                                      "width": 25.0, "height": 20.0}}
    fixed = ls.patch(f"/api/annotations/{annotation['id']}", json={"result": [inside]})
    assert fixed.status_code == 200, fixed.text
    result = import_export("from-ls")
    assert sum(c["boxes"] for c in result.record.counts.values()) == 2
    label_value = inside["value"]
    want = [label_value[k] / 100 for k in ("x", "y", "width", "height")]
    (label,) = [p for p in (result.folder / "labels").glob("*/*.txt") if "shapes_1" in p.stem]
    (line,) = label.read_text().splitlines()
    cls, cx, cy, w, h = line.split()
    assert result.record.classes[int(cls)] == label_value["rectanglelabels"][0]
    assert [float(cx) - float(w) / 2, float(cy) - float(h) / 2, float(w), float(h)] == (
        pytest.approx(want, abs=1e-4))
