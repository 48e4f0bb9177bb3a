"""Detect page: pick an image, run ``/predict``, show the boxes, then collect feedback."""

from __future__ import annotations

import streamlit as st
from PIL import UnidentifiedImageError

from gateway_client import GatewayError
from webapp.client import make_client
from webapp.config import Settings
from webapp.drawing import Annotation, draw_boxes, load_image
from webapp.samples import UPLOAD_EXTENSIONS, content_type, list_samples
from webapp.views import feedback
from webapp.views.common import settings_or_stop, show_error
from webapp.views.session import DETECTION_KEY, Detection, ImageInput

SOURCE_UPLOAD = "Upload an image"
SOURCE_SAMPLE = "Use a sample"

DEFAULT_CONF = 0.25
# The same defaults as the handler (serving/model-config.yaml) and Ultralytics predict, so the
# web app shows what an API client without parameters gets.
DEFAULT_IOU = 0.7


def _choose_image(settings: Settings) -> ImageInput | None:
    """The image source widgets; returns the chosen image, or ``None`` when there is none yet."""
    source = st.radio(
        "Image source", [SOURCE_UPLOAD, SOURCE_SAMPLE], horizontal=True, key="image_source"
    )
    if source == SOURCE_UPLOAD:
        upload = st.file_uploader(
            "Image (JPEG, PNG, WebP or BMP)", type=UPLOAD_EXTENSIONS, key="upload"
        )
        if upload is None:
            return None
        return ImageInput(upload.name, upload.getvalue(), upload.type or content_type(upload.name))

    samples = list_samples(settings.samples_dir)
    if not samples:
        st.info(
            f"No sample images in `{settings.samples_dir}`. Upload an image instead, or point "
            "`WEBAPP_SAMPLES_DIR` at a folder of images."
        )
        return None
    path = st.selectbox("Sample image", samples, format_func=lambda p: p.name, key="sample")
    try:
        data = path.read_bytes()
    except OSError as exc:
        st.error(f"Cannot read the sample `{path.name}`: {exc.strerror or exc}")
        return None
    return ImageInput(path.name, data, content_type(path.name))


def _detect(settings: Settings, image: ImageInput, conf: float, iou: float) -> None:
    """Call ``/predict``; keep the result for the next reruns or show why it failed."""
    try:
        with st.spinner("Detecting..."), make_client(settings) as gateway:
            prediction = gateway.predict(
                image.data, image.name, image.content_type, conf=conf, iou=iou
            )
    except GatewayError as err:
        st.session_state.pop(DETECTION_KEY, None)
        show_error(err, "Detection failed")
        return
    st.session_state[DETECTION_KEY] = Detection(image, prediction, conf, iou)


def _show_preview(image: ImageInput) -> None:
    try:
        st.image(load_image(image.data), caption=image.name)
    except (UnidentifiedImageError, OSError):
        # The gateway has the last word on what it accepts; say so rather than block.
        st.warning(f"`{image.name}` cannot be previewed here; the gateway will judge it.")


def _show_result(detection: Detection) -> None:
    """Model, timings, the image with its boxes, and the table of boxes."""
    pred = detection.prediction
    timing = pred.timing_ms
    cols = st.columns(4)
    cols[0].metric("Model version", pred.model_version)
    cols[1].metric("Boxes", len(pred.boxes))
    server_ms = timing.get("total")
    cols[2].metric("Gateway time", f"{server_ms:.1f} ms" if server_ms is not None else "n/a")
    cols[3].metric("Round trip", f"{pred.round_trip_ms:.1f} ms")
    breakdown = ", ".join(f"{k} {v:.1f} ms" for k, v in timing.items() if k != "total")
    st.caption(
        " · ".join(
            part
            for part in (
                f"{pred.width}×{pred.height} px",
                f"conf ≥ {detection.conf:.2f}, IoU {detection.iou:.2f}",
                breakdown,
                f"request `{pred.request_id}`" if pred.request_id else "",
            )
            if part
        )
    )

    annotations = [
        Annotation(box.xyxy, f"{box.name} {box.conf:.2f}", box.cls) for box in pred.boxes
    ]
    try:
        picture = load_image(detection.image.data, (pred.width, pred.height))
    except (UnidentifiedImageError, OSError):
        st.warning("The gateway read this image, but it cannot be drawn here; see the table.")
    else:
        st.image(
            draw_boxes(picture, annotations, source_size=(pred.width, pred.height)),
            caption=f"{detection.image.name}: {len(pred.boxes)} box(es)",
        )

    if not pred.boxes:
        st.info(f"No objects found at confidence ≥ {detection.conf:.2f}.")
        return
    st.dataframe(
        [
            {
                "#": i,
                "class": box.name,
                "confidence": round(box.conf, 4),
                "x1": round(box.xyxy[0], 1),
                "y1": round(box.xyxy[1], 1),
                "x2": round(box.xyxy[2], 1),
                "y2": round(box.xyxy[3], 1),
            }
            for i, box in enumerate(pred.boxes, start=1)
        ],
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    """The whole Detect page."""
    settings = settings_or_stop()
    st.title("Detect objects")
    image = _choose_image(settings)

    left, right = st.columns(2)
    conf = left.slider("Confidence threshold", 0.0, 1.0, DEFAULT_CONF, 0.01, key="conf")
    iou = right.slider("IoU threshold (NMS)", 0.0, 1.0, DEFAULT_IOU, 0.01, key="iou")
    if st.button("Detect", type="primary", disabled=image is None, key="detect") and image:
        _detect(settings, image, conf, iou)

    if image is None:
        return
    detection: Detection | None = st.session_state.get(DETECTION_KEY)
    if detection is None or detection.image.digest != image.digest:
        _show_preview(image)
        return
    _show_result(detection)
    st.divider()
    feedback.render(settings, detection)
