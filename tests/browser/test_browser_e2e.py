"""A user in real Chromium: upload an image, detect, correct the boxes on the canvas, send.

Everything is real: Chromium (driven by Playwright, no browser download), the Streamlit web app
as its own process with its annotation component, the gateway, TorchServe serving the shipped
model, and the feedback store. The user drags a predicted box elsewhere, resizes another, draws
a missed object, and sends. The test ends where the data lands: the rows in the stack's
``data/prod_data.csv`` (which has no coordinates: a box moved off its object shows there as a
``__missed__`` row plus a ``__background__`` one) and the image + YOLO label kept for
retraining, which holds the moved, resized and drawn boxes' coordinates. Screenshots go to
``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.annotate import AnnotationCanvas
from tests.integration.conftest import Stack
from tests.integration.loop_support import wait_exported
from yoloserve import paths

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SAMPLE = paths.ROOT / "data" / "samples" / "shapes_1.jpg"
#: Where the first box is dragged to (its top-left corner): shapes_1.jpg's plain background.
MOVED_TO = (12.0, 12.0)
#: A missed object drawn by hand, bottom right of shapes_1.jpg: plain background too.
DRAWN = (410.0, 500.0, 480.0, 570.0)
#: How far the mouse may land from where it was sent, in image pixels (sub-pixel screen rounding
#: at a canvas scale near 1).
TOLERANCE_PX = 2.0

Box = tuple[float, float, float, float]


def settle(page: Page) -> None:
    """Wait until Streamlit has finished the rerun an interaction started."""
    page.wait_for_timeout(300)  # the script state flips to "running" a moment after the event
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def shown_boxes(page: Page) -> list[tuple[str, Box]]:
    """The detection's boxes as the page's table lists them (class, x1, y1, x2, y2).

    The detection's table is the page's first data frame (the feedback preview comes later); its
    grid draws its cells a moment after the metrics above it, so they are waited for.
    """
    table = page.locator("[data-testid='stDataFrame']").first
    # Glide's cells are an accessibility table, never "visible": attached is what counts.
    table.locator("[role='gridcell']").first.wait_for(state="attached")
    rows = table.locator("[role='row']").filter(has=page.locator("[role='gridcell']"))
    boxes = []
    for row in rows.all():
        cells = [c.strip() for c in row.locator("[role='gridcell']").all_inner_texts()]
        # Columns: #, class, confidence, x1, y1, x2, y2 (webapp/views/detect.py).
        x1, y1, x2, y2 = (float(v) for v in cells[-4:])
        boxes.append((cells[-6], (x1, y1, x2, y2)))
    return boxes


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def yolo_boxes(label: Path, width: int, height: int) -> list[tuple[int, Box]]:
    """A kept YOLO label (class, cx, cy, w, h normalised) back in image pixels."""
    boxes = []
    for line in label.read_text().splitlines():
        if not line.strip():
            continue
        cls, cx, cy, w, h = line.split()
        x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        boxes.append((int(cls), (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)))
    return boxes


def prod_rows(stack: Stack) -> list[dict[str, str]]:
    """The rows of ``prod_data.csv`` once the gateway's export caught up with the store."""
    path = wait_exported(stack)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_detect_correct_on_the_canvas_and_send_feedback(
    page: Page, webapp_url: str, stack: Stack, artifacts: Path
) -> None:
    rows_before = len(prod_rows(stack))
    with Image.open(SAMPLE) as image:
        width, height = image.size
    page.goto(webapp_url)
    page.get_by_role("heading", name="Detect objects").wait_for()
    expect(page.get_by_text("Gateway is up")).to_be_visible()

    # Upload and detect.
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(SAMPLE)
    page.get_by_text(SAMPLE.name).first.wait_for()
    page.get_by_role("button", name="Detect", exact=True).click()
    version_metric = page.locator("[data-testid='stMetric']").filter(has_text="Model version")
    version_metric.wait_for()
    settle(page)
    served = stack.registry.load().default_version
    expect(version_metric.locator("[data-testid='stMetricValue']")).to_have_text(str(served))
    boxes_metric = page.locator("[data-testid='stMetric']").filter(has_text="Boxes")
    n_boxes = int(boxes_metric.locator("[data-testid='stMetricValue']").inner_text())
    assert n_boxes >= 2, "the shipped model finds the shapes of shapes_1.jpg"
    predicted = shown_boxes(page)
    assert len(predicted) == n_boxes
    caption = page.get_by_text(re.compile(r"request [0-9a-f]{16,}")).inner_text()
    request_id = re.search(r"request ([0-9a-f]{16,})", caption).group(1)  # type: ignore[union-attr]
    page.screenshot(path=str(artifacts / "browser_1_detected.png"), full_page=True)

    # Box 1 dragged off its object (to plain background), box 2 resized a little (it still
    # covers its object), and a missed triangle drawn.
    (name_1, box_1), (name_2, box_2) = predicted[0], predicted[1]
    dx, dy = MOVED_TO[0] - box_1[0], MOVED_TO[1] - box_1[1]
    moved: Box = (box_1[0] + dx, box_1[1] + dy, box_1[2] + dx, box_1[3] + dy)
    grow = 0.1 * min(box_2[2] - box_2[0], box_2[3] - box_2[1])
    resized: Box = (box_2[0], box_2[1], box_2[2] + grow, box_2[3] + grow)
    # The expected rows below hold only if the moved and drawn boxes match no prediction.
    assert all(iou(b, other) < 0.5 for b in (moved, DRAWN) for _, other in predicted)
    assert iou(resized, box_2) >= 0.5

    canvas = AnnotationCanvas(page, width, height)
    canvas.ready()
    centre_1 = ((box_1[0] + box_1[2]) / 2, (box_1[1] + box_1[3]) / 2)
    canvas.click(*centre_1)  # select it: only a selected box can be dragged
    canvas.drag(centre_1, (centre_1[0] + dx, centre_1[1] + dy))
    canvas.click((box_2[0] + box_2[2]) / 2, (box_2[1] + box_2[3]) / 2)
    canvas.drag((box_2[2], box_2[3]), (resized[2], resized[3]))  # its bottom-right anchor
    canvas.click(DRAWN[0], DRAWN[1])  # on the background: nothing selected any more
    canvas.choose_class("triangle")  # the class of the next box drawn
    canvas.drag((DRAWN[0], DRAWN[1]), (DRAWN[2], DRAWN[3]))
    page.screenshot(path=str(artifacts / "browser_2_canvas_edited.png"), full_page=True)
    canvas.complete()
    applied = page.get_by_text(f"Your edits are applied: {n_boxes + 1} label(s).")
    applied.wait_for()
    settle(page)
    page.get_by_text("Preview of the").click()  # open the expander: the labels as drawn
    settle(page)
    expect(page.get_by_text(f"Preview of the {n_boxes + 1} label(s) to send")).to_be_visible()
    page.screenshot(path=str(artifacts / "browser_3_feedback_preview.png"), full_page=True)

    send = page.get_by_role("button", name="Send feedback")
    send.click()
    saved = page.get_by_text(re.compile(r"Feedback saved: \d+ row\(s\) written"))
    saved.wait_for()
    settle(page)
    page.screenshot(path=str(artifacts / "browser_4_feedback_saved.png"), full_page=True)
    written = int(re.search(r"(\d+) row", saved.inner_text()).group(1))  # type: ignore[union-attr]
    feedback_id = re.search(  # type: ignore[union-attr]
        r"Feedback id (\S+)", page.get_by_text("Feedback id").inner_text()
    ).group(1)
    expect(send).to_be_disabled()  # a second click would store the same rows twice

    # What landed in prod_data.csv: one row per true box (n_boxes + 1), and one for the
    # prediction the moved box left behind.
    assert written == n_boxes + 2
    rows = prod_rows(stack)
    assert len(rows) == rows_before + written
    mine = [r for r in rows if r["feedback_id"] == feedback_id]
    assert len(mine) == written
    assert {r["request_id"] for r in mine} == {request_id}
    assert {r["model_version"] for r in mine} == {str(served)}
    pairs = sorted((r["target"], r["prediction"]) for r in mine)
    assert (name_1, "__missed__") in pairs  # the moved box: where no prediction is
    assert ("__background__", name_1) in pairs  # its prediction, now unmatched
    assert ("triangle", "__missed__") in pairs  # the drawn one
    assert sum(t == p for t, p in pairs) == n_boxes - 1  # box 2 (resized) and the others
    assert all(r["emb_0"] not in ("", None) for r in mine)

    # The kept YOLO label holds the boxes where the mouse put them, in the image's pixels.
    label = stack.data_dir / "feedback" / "labels" / f"{feedback_id}.txt"
    kept = yolo_boxes(label, width, height)
    assert len(kept) == n_boxes + 1
    classes = stack.registry.load().classes
    for name, expected in ((name_1, moved), (name_2, resized), ("triangle", DRAWN)):
        assert any(
            cls == classes.index(name)
            and all(abs(a - b) <= TOLERANCE_PX for a, b in zip(got, expected, strict=True))
            for cls, got in kept
        ), f"no {name} at {expected} in {kept}"
    images = list((stack.data_dir / "feedback" / "images").glob(f"{feedback_id}.*"))
    assert len(images) == 1 and images[0].read_bytes() == SAMPLE.read_bytes()
