"""Review page: the predictions the gateway picked for labelling (its review queue), one at a time.

The next item (``GET /review``, highest priority first) is shown with its boxes and the same
feedback canvas as the Detect page (one way to label): move, resize, delete or re-class the
predicted boxes, draw missed ones, send.
The feedback carries the item's ``review_id``, which closes it, so the page moves to the next
item; *Dismiss* drops an item without labelling it. The queue fills as predictions come in.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image, UnidentifiedImageError

from gateway_client import FeedbackResult, GatewayError, Prediction, ReviewItem, ReviewQueue
from webapp import icons
from webapp.client import make_client
from webapp.config import Settings
from webapp.drawing import Annotation, draw_boxes, load_image
from webapp.views import feedback
from webapp.views.common import settings_or_stop, show_error
from webapp.views.session import Detection, ImageInput

#: Why the gateway picked an item, in the user's words.
REASONS = {
    "uncertain": "a box's confidence is close to the detection threshold",
    "rare": "it shows a class that is rare in the training data",
    "novel": "it looks unlike anything in the training data",
}
#: Key of the detection shown on the last run (its feedback result is reported once).
LAST_KEY = "review_last_detection"
#: Key of the item dismissed on the last run (reported once).
DISMISSED_KEY = "review_dismissed"
#: Seconds between looks at an empty queue: the page fills by itself as predictions come in.
EMPTY_REFRESH_S = 5.0
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp"}


def as_detection(item: ReviewItem, data: bytes) -> Detection:
    """The item as a detection the feedback widgets work on (keyed by its review id)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = _MIME.get(str(image.format), "application/octet-stream")
    except (UnidentifiedImageError, OSError):
        mime = "application/octet-stream"  # the gateway judges the bytes, not this name
    extension = mime.rsplit("/", 1)[-1]
    prediction = Prediction(
        request_id=item.request_id,
        model_name="",
        model_version=item.model_version,
        width=item.width,
        height=item.height,
        boxes=item.boxes,
        timing_ms={},
        round_trip_ms=0.0,
    )
    return Detection(
        image=ImageInput(f"{item.review_id}.{extension}", data, mime),
        prediction=prediction,
        conf=0.0,
        iou=0.0,
        key=item.review_id,
        review_id=item.review_id,
    )


def _load_queue(settings: Settings) -> ReviewQueue | None:
    try:
        with make_client(settings) as gateway:
            return gateway.review(limit=1)
    except GatewayError as err:
        show_error(err, "Cannot load the review queue")
        return None


def _load_image(settings: Settings, item: ReviewItem) -> bytes | None:
    try:
        with make_client(settings) as gateway:
            return gateway.review_image(item.image_url)
    except GatewayError as err:
        show_error(err, "Cannot load this item's image")
        return None


def _dismiss(settings: Settings, review_id: str) -> None:
    try:
        with st.spinner("Dismissing..."), make_client(settings) as gateway:
            gateway.dismiss(review_id)
    except GatewayError as err:
        show_error(err, "The item was not dismissed")
        return
    st.session_state[DISMISSED_KEY] = review_id
    st.rerun()


def _report_last_run() -> None:
    """What the previous run did: the item labelled or dismissed, said once."""
    dismissed = st.session_state.pop(DISMISSED_KEY, None)
    if dismissed:
        st.success(f"Item `{dismissed}` dismissed.", icon=icons.DISMISSED)
    last = st.session_state.get(LAST_KEY)
    result: FeedbackResult | None = st.session_state.get(f"fb-{last}-result") if last else None
    if result is not None:
        st.success(
            f"Item `{last}` labelled: {result.rows_written} row(s) written.",
            icon=icons.FEEDBACK_SAVED,
        )
        if result.retrain_triggered and result.job_id:
            st.info(f"That feedback triggered retrain `{result.job_id}`: see the Models page.")


@st.fragment(run_every=EMPTY_REFRESH_S)
def _wait_for_items(settings: Settings) -> None:
    """While the queue is empty, look again every few seconds; rerun the page once it is not."""
    queue = _load_queue(settings)
    if queue is not None and queue.items:
        st.rerun()  # the whole page: the item comes up with its feedback widgets
    st.info(
        "Nothing to review. The queue fills as predictions come in (Detect page, or any "
        "client of `POST /predict`) and empties as items are labelled or dismissed; this page "
        f"looks again every {EMPTY_REFRESH_S:g} s.",
        icon=icons.QUEUE_EMPTY,
    )


def _show_item(item: ReviewItem, detection: Detection, total: int) -> None:
    cols = st.columns(3)
    cols[0].metric("Open items", total)
    cols[1].metric("Reason", item.reason)
    cols[2].metric("Model version", item.model_version)
    st.caption(
        f"Picked because {REASONS.get(item.reason, item.reason)}"
        + (f" · priority {item.priority:.2f}" if item.priority is not None else "")
        + (f" · sampled {item.created_at}" if item.created_at else "")
        + f" · item `{item.review_id}`"
    )
    annotations = [
        Annotation(box.xyxy, f"{box.name} {box.conf:.2f}", box.cls) for box in item.boxes
    ]
    try:
        picture = load_image(detection.image.data, (item.width, item.height))
    except (UnidentifiedImageError, OSError):
        st.warning("This image cannot be drawn here; the boxes are listed below.")
    else:
        st.image(
            draw_boxes(picture, annotations, source_size=(item.width, item.height)),
            caption=f"{len(item.boxes)} predicted box(es)",
        )


def render() -> None:
    """The whole Review page."""
    settings = settings_or_stop()
    st.title("Review queue")
    st.caption(
        "Predictions the gateway picked as worth a label. Correct the boxes and send them, "
        "or dismiss the item; either way the next one comes up."
    )
    _report_last_run()
    queue = _load_queue(settings)
    if queue is None:
        return
    if not queue.items:
        _wait_for_items(settings)
        return
    item = queue.items[0]
    data = _load_image(settings, item)
    if data is None:
        return
    detection = as_detection(item, data)
    st.session_state[LAST_KEY] = detection.key
    _show_item(item, detection, queue.total)
    left, right = st.columns(2)
    if left.button("Dismiss (not worth labelling)", key=f"review-dismiss-{item.review_id}"):
        _dismiss(settings, item.review_id)
    right.button("Refresh", key="review-refresh")
    st.divider()
    feedback.render(settings, detection)
