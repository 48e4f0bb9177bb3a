"""Feedback on a detection: correct the boxes on the image itself, then send them.

The predicted boxes start on an annotation canvas (``webapp.annotator``): the user moves and
resizes them, deletes false ones, draws the objects the model missed and sets each box's class,
then presses *Complete* to apply the edits. What is sent is that ground truth (``POST
/feedback``), in the image's own pixels; untouched, it is the predictions as they are, so
confirming everything is one click on *Send feedback*. A deleted box is simply left out: the
gateway matches ground truth to predictions and records the drop as ``__background__`` itself.
"""

from __future__ import annotations

import streamlit as st

from gateway_client import FeedbackResult, GatewayError, LabelBox
from webapp import annotator, icons
from webapp.client import make_client
from webapp.config import Settings
from webapp.drawing import Annotation, draw_boxes, load_image
from webapp.views.common import show_error
from webapp.views.session import CLASSES_KEY, PENDING_JOB_KEY, Detection

#: Most boxes one feedback may add beyond the predictions (a feedback is a correction, not a
#: labelling session; the gateway's own ceiling is far above).
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


def revision_key(detection_key: str) -> str:
    """Session key of how often *Start over* was pressed on a detection (``Detection.key``)."""
    return f"fb-{detection_key}-revision"


def canvas_key(detection_key: str, revision: int) -> str:
    """The annotation canvas's key: per detection, and a new one (a fresh canvas) per revision."""
    return f"fb-{detection_key}-boxes-{revision}"


def _start_over(detection: Detection) -> None:
    # A new key gives a new canvas, which starts from the predictions again.
    key = revision_key(detection.key)
    st.session_state[key] = int(st.session_state.get(key, 0)) + 1


def _annotate(detection: Detection, classes: list[str]) -> tuple[list[LabelBox], bool]:
    """The canvas; returns the labels to send and whether the user's edits are in them."""
    pred = detection.prediction
    predicted = [LabelBox(box.xyxy, box.name) for box in pred.boxes]
    try:
        picture = load_image(detection.image.data, (pred.width, pred.height))
    except OSError:  # PIL's UnidentifiedImageError is an OSError
        st.caption("This image cannot be drawn here: sending confirms the predicted boxes.")
        return predicted, False
    names = annotator.class_names(classes, (box.name for box in predicted))
    revision = int(st.session_state.get(revision_key(detection.key), 0))
    edited = annotator.annotate(
        picture,
        predicted,
        names,
        annotator.fit((pred.width, pred.height)),
        canvas_key(detection.key, revision),
    )
    return (predicted, False) if edited is None else (edited, True)


def _row(label: LabelBox) -> dict[str, object]:
    """A label as a table row: the numbers exactly as they will be sent."""
    x1, y1, x2, y2 = label.to_json()["xyxy"]
    return {"class": label.name, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


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
        "Correct the boxes on the image: drag a box to move it, drag its corners to resize it, "
        "drag on empty space to draw an object the model missed, pick a box's class on the "
        "right, switch *Mode* to *Del* and click a box to delete it. Press **Complete** (or "
        "the space bar) to apply your edits, then send. Your labels become training data."
    )
    classes = load_classes(settings)
    if classes is None:
        return

    labels, edited = _annotate(detection, classes)
    limit = len(detection.prediction.boxes) + MAX_MISSED
    problems = (
        [f"{len(labels)} boxes: at most {limit} (the predictions + {MAX_MISSED}) per feedback."]
        if len(labels) > limit
        else []
    )
    for problem in problems:
        st.error(problem)
    left, right = st.columns([3, 1])
    left.caption(
        f"Your edits are applied: {len(labels)} label(s)."
        if edited
        else "No edits applied: sending confirms every predicted box as it is."
    )
    right.button(
        "Start over", key=f"fb-{detection.key}-reset", on_click=_start_over, args=(detection,),
        help="Back to the predicted boxes: drops every edit, applied or not.",
    )

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
        if labels:
            st.dataframe([_row(b) for b in labels], hide_index=True)
        else:
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
