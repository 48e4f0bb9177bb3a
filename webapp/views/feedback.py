"""Feedback on a detection: confirm, correct or drop each box, add missed ones, send it.

What is sent is the ground truth as the user corrected it (``POST /feedback``): every kept box
with its final class, plus the missed objects. A dropped box is simply left out; the gateway
matches ground truth to predictions and records the drop as ``__background__`` itself.
"""

from __future__ import annotations

import streamlit as st

from gateway_client import FeedbackResult, GatewayError, LabelBox
from webapp import icons
from webapp.client import make_client
from webapp.config import Settings
from webapp.drawing import Annotation, draw_boxes, load_image
from webapp.views.common import show_error
from webapp.views.session import CLASSES_KEY, PENDING_JOB_KEY, Detection

#: Selectbox value meaning "this box is not an object": the box is left out of the labels.
NOT_AN_OBJECT = "__not_an_object__"
#: Most missed objects one feedback can add (keeps the form a form, not a spreadsheet).
MAX_MISSED = 20


def load_classes(settings: Settings) -> list[str] | None:
    """The model's class names, from the session or ``GET /models``; ``None`` when unavailable."""
    cached: list[str] | None = st.session_state.get(CLASSES_KEY)
    if cached:
        return cached
    try:
        with make_client(settings) as gateway:
            classes = gateway.models().classes
    except GatewayError as err:
        show_error(err, "Cannot load the class names for feedback")
        return None
    st.session_state[CLASSES_KEY] = classes
    return classes


def _box_choices(detection: Detection, classes: list[str]) -> list[LabelBox]:
    """One selectbox per predicted box; returns the boxes the user keeps, with their class."""
    kept: list[LabelBox] = []
    for i, box in enumerate(detection.prediction.boxes, start=1):
        # A name the model knows but /models does not list (classes changed since) stays
        # selectable, so confirming it is always possible.
        options = [*classes, *([box.name] if box.name not in classes else []), NOT_AN_OBJECT]

        def label(option: str, predicted: str = box.name) -> str:
            if option == NOT_AN_OBJECT:
                return "✗ not an object"
            return f"✓ {option} (as predicted)" if option == predicted else f"→ {option}"

        coords = ", ".join(f"{v:.0f}" for v in box.xyxy)
        choice = st.selectbox(
            f"Box {i}: {box.name} {box.conf:.2f} at [{coords}]",
            options,
            index=options.index(box.name),
            format_func=label,
            key=f"fb-{detection.key}-box-{i}",
        )
        if choice != NOT_AN_OBJECT:
            kept.append(LabelBox(box.xyxy, choice))
    return kept


def _missed_objects(detection: Detection, classes: list[str]) -> tuple[list[LabelBox], list[str]]:
    """Fields for objects the model missed; returns the boxes and the problems found in them."""
    width = float(detection.prediction.width)
    height = float(detection.prediction.height)
    count = int(
        st.number_input(
            "Missed objects (ones the model did not find)",
            min_value=0,
            max_value=MAX_MISSED,
            value=0,
            step=1,
            key=f"fb-{detection.key}-missed",
        )
    )
    boxes: list[LabelBox] = []
    problems: list[str] = []
    for j in range(1, count + 1):
        cols = st.columns([2, 1, 1, 1, 1])
        name = cols[0].selectbox(
            f"Missed object {j}: class", classes, key=f"fb-{detection.key}-m{j}-cls"
        )
        # Bounded by the image size, so a box can never point outside the picture.
        x1, y1, x2, y2 = (
            float(
                col.number_input(
                    f"{axis}",
                    min_value=0.0,
                    max_value=limit,
                    value=0.0,
                    step=1.0,
                    format="%.1f",
                    key=f"fb-{detection.key}-m{j}-{axis}",
                )
            )
            for col, axis, limit in zip(
                cols[1:], ("x1", "y1", "x2", "y2"), (width, height, width, height), strict=True
            )
        )
        if x2 <= x1 or y2 <= y1:
            problems.append(
                f"Missed object {j}: x2 must be greater than x1 and y2 greater than y1 "
                f"(pixels, image is {width:.0f}×{height:.0f})."
            )
        else:
            boxes.append(LabelBox((x1, y1, x2, y2), name))
    return boxes, problems


def _send(settings: Settings, detection: Detection, labels: list[LabelBox]) -> bool:
    """``POST /feedback``; stores the answer in the session. Returns whether it succeeded."""
    image = detection.image
    try:
        with st.spinner("Sending feedback..."), make_client(settings) as gateway:
            result = gateway.feedback(
                image.data,
                image.name,
                image.content_type,
                labels,
                request_id=detection.prediction.request_id,
                review_id=detection.review_id,
            )
    except GatewayError as err:
        show_error(err, "Feedback was not saved")
        return False
    st.session_state[f"fb-{detection.key}-result"] = result
    if result.retrain_triggered and result.job_id:
        st.session_state[PENDING_JOB_KEY] = result.job_id
    return True


def _show_result(result: FeedbackResult) -> None:
    """What the gateway wrote, and whether it started a retrain."""
    st.success(f"Feedback saved: {result.rows_written} row(s) written.", icon=icons.FEEDBACK_SAVED)
    cols = st.columns(3)
    cols[0].metric("Rows written", result.rows_written)
    cols[1].metric("Production rows in total", result.prod_rows_total)
    cols[2].metric(
        "Next retrain at", f"{result.next_at_rows} rows" if result.next_at_rows else "n/a"
    )
    if result.retrain_triggered:
        job = f" as job `{result.job_id}`" if result.job_id else ""
        st.info(f"This feedback triggered a retrain{job}. Follow it on the Models page.")
    else:
        st.caption("No retrain triggered by this feedback.")
    if result.feedback_id:
        st.caption(f"Feedback id `{result.feedback_id}`")


def render(settings: Settings, detection: Detection) -> None:
    """The feedback section under a detection."""
    st.subheader("Feedback")
    st.caption(
        "Confirm or correct each box, mark false detections as *not an object*, and add the "
        "objects the model missed. Your labels become training data for the next model."
    )
    classes = load_classes(settings)
    if classes is None:
        return

    kept = _box_choices(detection, classes)
    missed, problems = _missed_objects(detection, classes)
    labels = kept + missed
    for problem in problems:
        st.error(problem)

    # A class's colour comes from its index: /models' order, which is the model's; a name only
    # the prediction knows (classes changed since) keeps the index the model gave it.
    index = {box.name: box.cls for box in detection.prediction.boxes}
    index.update((name, i) for i, name in enumerate(classes))
    with st.expander(f"Preview of the {len(labels)} label(s) to send"):
        try:
            picture = load_image(
                detection.image.data, (detection.prediction.width, detection.prediction.height)
            )
        except OSError:  # PIL's UnidentifiedImageError is an OSError
            st.caption("This image cannot be drawn here.")
        else:
            st.image(
                draw_boxes(
                    picture,
                    [Annotation(b.xyxy, b.name, index[b.name]) for b in labels],
                    source_size=(detection.prediction.width, detection.prediction.height),
                )
            )
        if not labels:
            st.caption("No boxes: this tells the gateway there is nothing to detect here.")

    result_key = f"fb-{detection.key}-result"
    result: FeedbackResult | None = st.session_state.get(result_key)
    clicked = st.button(
        "Send feedback",
        type="primary",
        # Once sent, a second send would write the same rows twice.
        disabled=bool(problems) or result is not None,
        key=f"fb-{detection.key}-send",
    )
    if clicked and result is None and not problems and _send(settings, detection, labels):
        st.rerun()  # re-render with the button disabled and the answer shown
    if result is not None:
        _show_result(result)
