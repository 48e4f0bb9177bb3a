"""What the pages share through ``st.session_state``: its keys and the detection kept there.

The Detect page stores a :class:`Detection`, the feedback section under it reads it, and the
Models page reads what feedback left (class names, a triggered job). Keeping these here, and
not in one of those views, lets each view import it without importing another view.

Example:
    >>> image = ImageInput("a.png", b"...", "image/png")
    >>> len(image.digest)
    64
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from functools import cached_property

from gateway_client import Prediction

#: Key of the last successful detection (it must survive the reruns that every feedback widget
#: triggers).
DETECTION_KEY = "detection"
#: Key of the class names from ``GET /models`` (fetched once per session).
CLASSES_KEY = "classes"
#: Key the Models page reads to prefill its job lookup after a triggered retrain.
PENDING_JOB_KEY = "pending_job_id"


@dataclass(frozen=True)
class ImageInput:
    """The image the user chose, exactly as it will be sent (and re-sent with feedback)."""

    name: str
    data: bytes
    content_type: str

    @cached_property
    def digest(self) -> str:
        """Identifies the content, so a result is shown only next to the image it belongs to."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Detection:
    """A successful ``/predict`` call and what it was made with.

    Attributes:
        image: The image sent.
        prediction: The gateway's answer.
        conf: Confidence threshold used.
        iou: IoU threshold used.
        key: Unique per detection; prefixes the feedback widgets' keys, so a new detection
            starts with fresh feedback choices instead of inheriting the previous ones.
        review_id: The review-queue item this detection came from (the Review page); its
            feedback closes that item.
    """

    image: ImageInput
    prediction: Prediction
    conf: float
    iou: float
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    review_id: str | None = None
