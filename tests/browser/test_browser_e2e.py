"""A user in real Chromium: upload an image, detect, correct the boxes, send feedback.

Everything is real: Chromium (driven by Playwright, no browser download), the Streamlit web app
as its own process, the gateway, TorchServe serving the shipped model, and the feedback store.
The test ends where the data lands: the rows in the stack's ``data/prod_data.csv`` and the
image + YOLO label kept for retraining. Screenshots go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.integration.conftest import Stack
from tests.integration.loop_support import wait_exported
from yoloserve import paths

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SAMPLE = paths.ROOT / "data" / "samples" / "shapes_1.jpg"
MISSED_BOX = (20.0, 20.0, 90.0, 90.0)  # top-left corner of shapes_1.jpg: plain background


def settle(page: Page) -> None:
    """Wait until Streamlit has finished the rerun an interaction started."""
    page.wait_for_timeout(300)  # the script state flips to "running" a moment after the event
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox whose label starts with ``label``."""
    select = page.locator("[data-testid='stSelectbox']").filter(has_text=label)
    combobox = select.get_by_role("combobox")
    for _ in range(3):  # a rerun may close the list between the click and the pick
        combobox.click()
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.wait_for(timeout=5_000)
            choice.click()
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            settle(page)
    expect(combobox).to_have_value(option)
    settle(page)


def type_number(page: Page, label: str, value: float) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(f"{value:g}")
    field.press("Enter")  # Streamlit commits a number input on Enter or blur
    settle(page)


def prod_rows(stack: Stack) -> list[dict[str, str]]:
    """The rows of ``prod_data.csv`` once the gateway's export caught up with the store."""
    path = wait_exported(stack)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_detect_correct_and_send_feedback(
    page: Page, webapp_url: str, stack: Stack, artifacts: Path
) -> None:
    rows_before = len(prod_rows(stack))
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
    table_rows = page.locator("[data-testid='stDataFrame'] [role='row']").filter(
        has=page.locator("[role='gridcell']")
    )
    expect(table_rows).to_have_count(n_boxes)
    caption = page.get_by_text(re.compile(r"request [0-9a-f]{16,}")).inner_text()
    request_id = re.search(r"request ([0-9a-f]{16,})", caption).group(1)  # type: ignore[union-attr]
    page.screenshot(path=str(artifacts / "browser_1_detected.png"), full_page=True)

    # Feedback: box 1 gets another class, box 2 is confirmed, every other box is confirmed too,
    # and one object the model missed is added with the numeric fields.
    box1 = page.locator("[data-testid='stSelectbox']").filter(has_text="Box 1:")
    predicted_1 = re.search(r"Box 1: (\w+) ", box1.inner_text()).group(1)  # type: ignore[union-attr]
    corrected_1 = next(c for c in ("circle", "square", "triangle") if c != predicted_1)
    choose(page, "Box 1:", f"→ {corrected_1}")
    type_number(page, "Missed objects (ones the model did not find)", 1)
    choose(page, "Missed object 1: class", "triangle")
    for axis, value in zip(("x1", "y1", "x2", "y2"), MISSED_BOX, strict=True):
        type_number(page, axis, value)
    page.get_by_text("Preview of the").click()  # open the expander: the labels as drawn
    settle(page)
    expect(page.get_by_text(f"Preview of the {n_boxes + 1} label(s) to send")).to_be_visible()
    page.screenshot(path=str(artifacts / "browser_2_feedback_form.png"), full_page=True)

    send = page.get_by_role("button", name="Send feedback")
    send.click()
    saved = page.get_by_text(re.compile(r"Feedback saved: \d+ row\(s\) written"))
    saved.wait_for()
    settle(page)
    page.screenshot(path=str(artifacts / "browser_3_feedback_saved.png"), full_page=True)
    written = int(re.search(r"(\d+) row", saved.inner_text()).group(1))  # type: ignore[union-attr]
    feedback_id = re.search(  # type: ignore[union-attr]
        r"Feedback id (\S+)", page.get_by_text("Feedback id").inner_text()
    ).group(1)
    expect(send).to_be_disabled()  # a second click would store the same rows twice

    # What landed: one row per true box (n_boxes kept + 1 missed), no unmatched prediction.
    assert written == n_boxes + 1
    rows = prod_rows(stack)
    assert len(rows) == rows_before + written
    mine = [r for r in rows if r["feedback_id"] == feedback_id]
    assert len(mine) == written
    assert {r["request_id"] for r in mine} == {request_id}
    assert {r["model_version"] for r in mine} == {str(served)}
    pairs = sorted((r["target"], r["prediction"]) for r in mine)
    assert (corrected_1, predicted_1) in pairs
    assert ("triangle", "__missed__") in pairs
    assert sum(t == p for t, p in pairs) == n_boxes - 1  # the other boxes were confirmed
    assert all(r["emb_0"] not in ("", None) for r in mine)

    # The image and its YOLO label are kept for retraining: n_boxes + 1 objects.
    label = stack.data_dir / "feedback" / "labels" / f"{feedback_id}.txt"
    lines = [line.split() for line in label.read_text().splitlines() if line.strip()]
    assert len(lines) == n_boxes + 1
    with Image.open(SAMPLE) as image:
        width, height = image.size
    cx = (MISSED_BOX[0] + MISSED_BOX[2]) / 2 / width
    cy = (MISSED_BOX[1] + MISSED_BOX[3]) / 2 / height
    triangle = str(stack.registry.load().classes.index("triangle"))
    assert any(
        parts[0] == triangle
        and abs(float(parts[1]) - cx) < 1e-3
        and abs(float(parts[2]) - cy) < 1e-3
        for parts in lines
    )
    images = list((stack.data_dir / "feedback" / "images").glob(f"{feedback_id}.*"))
    assert len(images) == 1 and images[0].read_bytes() == SAMPLE.read_bytes()
