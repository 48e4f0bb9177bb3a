"""The gateway's side of ``POST /feedback``: parse the labels, know the classes, hold the recorder.

Recording itself is ``yoloserve.feedback.recorder.FeedbackRecorder`` (match by IoU, embed with the
shared embedder, append to ``prod_data.csv`` under its file lock with fsync, keep the image and its
YOLO label for retraining). This module only adapts it to the gateway: the class names come from the
registry (as ``GET /models`` shows them), and one recorder is built per loaded embedder.

Example:
    >>> parse_labels('{"boxes": [{"xyxy": [1, 2, 30, 40], "name": "square"}]}').boxes[0].name
    'square'
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway.embeddings import EmbeddingBackend
from yoloserve.embeddings.embedder import Embedder
from yoloserve.errors import InvalidLabels, ModelNotReady, RegistryError, UnknownClass
from yoloserve.feedback.recorder import FeedbackRecorder
from yoloserve.feedback.store import CsvStore, prod_header
from yoloserve.modelserver.registry import Registry
from yoloserve.schemas import FeedbackLabels

PROD_FILE_NAME = "prod_data.csv"
MAX_BOXES = 1000  # the handler's max_det ceiling: more ground truth than that is not a photo


def parse_labels(raw: str) -> FeedbackLabels:
    """Parse the ``labels`` form field.

    Raises:
        RequestValidationError: Not JSON, or not the contract's shape (the gateway answers 422
            ``validation_error``, as for any body that breaks the schema).
        InvalidLabels: More than ``MAX_BOXES`` boxes.
    """
    try:
        labels = FeedbackLabels.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"loc": ("body", "labels", *error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from exc
    if len(labels.boxes) > MAX_BOXES:
        raise InvalidLabels(f"at most {MAX_BOXES} boxes per image, got {len(labels.boxes)}")
    return labels


def check_classes(labels: FeedbackLabels, classes: list[str]) -> None:
    """Refuse a box whose class the model does not have (before any model time is spent).

    Raises:
        UnknownClass: The first box with an unknown name.
    """
    for index, box in enumerate(labels.boxes):
        if box.name not in classes:
            raise UnknownClass(
                f"boxes[{index}]: unknown class {box.name!r}; known classes: {classes}"
            )


class FeedbackService:
    """Class names and the feedback recorder of one gateway app.

    Args:
        data_dir: Root of ``prod_data.csv`` and ``feedback/``.
        registry: Source of the class names.
    """

    def __init__(self, data_dir: Path, registry: Registry) -> None:
        self.data_dir = Path(data_dir)
        self.prod_path = self.data_dir / PROD_FILE_NAME
        self.registry = registry
        self._recorder: FeedbackRecorder | None = None
        self._backend: EmbeddingBackend | None = None

    def classes(self) -> list[str]:
        """The model's class names, from the registry (blocking: reads a file).

        Raises:
            ModelNotReady: No model is registered yet, so no class names are known.
            RegistryError: The registry file cannot be read.
        """
        return self.model_facts()[0]

    def model_facts(self) -> tuple[list[str], str | None]:
        """The class names and the default version, from one read of the registry.

        Raises:
            ModelNotReady: No model is registered yet, so no class names are known.
            RegistryError: The registry file cannot be read.
        """
        try:
            data = self.registry.load()
        except (OSError, ValueError) as exc:
            raise RegistryError(f"the registry cannot be read: {exc}") from exc
        if not data.classes:
            raise ModelNotReady("no model is registered yet, so there are no class names")
        return list(data.classes), data.default_version

    def recorder_for(self, backend: EmbeddingBackend) -> FeedbackRecorder:
        """The recorder writing rows of ``backend``'s embedder (built once per backend).

        Called on the event loop only, so building it needs no lock.
        """
        if self._recorder is None or self._backend is not backend:
            store = CsvStore(self.prod_path, prod_header(backend.embedder.dim))
            # The recorder uses only dim, version and embed(): what SupportsEmbed promises.
            embedder = cast(Embedder, backend.embedder)
            self._recorder = FeedbackRecorder(self.data_dir, embedder, store)
            self._backend = backend
        return self._recorder
