"""Record user feedback: keep the image for retraining and commit embedded rows to the store.

One ``record()`` call is one ``POST /feedback``:

1. validate the labels (class names, boxes) and the image;
2. write ``feedback/labels/<id>.txt`` (YOLO format), then ``feedback/images/<id>.<ext>`` (the
   uploaded bytes as they came), each atomically; the retrain job only takes an image whose
   label exists, so it never sees half of a pair;
3. match ground truth to predictions (``yoloserve.feedback.matching``), embed each row's box with
   the same ``Embedder.embed`` that built ``ref_data.csv``, and commit the rows (with the
   feedback's idempotency key, if it has one) in one store transaction
   (``yoloserve.feedback.ledger``). That commit is the acknowledgement: if it fails, the image
   and label are removed again. ``prod_data.csv`` is exported from the store afterwards
   (``yoloserve.feedback.export``).

A recorder holds no mutable state, so one instance may be shared by a threadpool.

Example:
    >>> from yoloserve import paths
    >>> from yoloserve.store.engine import open_store
    >>> embedder = Embedder.load()
    >>> recorder = FeedbackRecorder(paths.DATA_DIR, embedder, FeedbackLedger(open_store()))
    >>> result = recorder.record(
    ...     open("photo.jpg", "rb").read(),
    ...     gt_boxes=[((120, 186, 227, 269), "square")],
    ...     predicted=[((119.8, 185.9, 227.4, 268.6), "triangle", 0.97)],
    ...     model_version="3", request_id="7f9c", classes=["circle", "square", "triangle"])
    >>> result.rows_written
    1
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from yoloserve.boxes import XYXY, yolo_label_line
from yoloserve.embeddings.embedder import Embedder
from yoloserve.errors import InvalidLabels, UnknownClass
from yoloserve.feedback.ledger import FeedbackLedger, KeyClaim, ProdRow, Settle, StoredAnswer
from yoloserve.feedback.matching import BACKGROUND, MISSED, match
from yoloserve.feedback.store import check_header, prod_header
from yoloserve.files import atomic_write
from yoloserve.images import decode_array, inspect_image

_MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FEEDBACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

__all__ = [
    "FeedbackRecorder",
    "FeedbackResult",
    "InvalidLabels",
    "UnknownClass",
]


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback call stored.

    Attributes:
        feedback_id: names the stored image/label pair and the rows.
        rows_written: rows this call stored (0 when ``existing``).
        prod_rows_total: feedback rows in the store right after this call's commit.
        existing: the key was stored already (an earlier or concurrent attempt): its answer.
        body: the answer stored with the key in the commit (``settle`` gave it), if any.
    """

    feedback_id: str
    rows_written: int
    prod_rows_total: int
    existing: StoredAnswer | None = None
    body: dict[str, Any] | None = None


def _text(value: str | None, what: str, error: type[Exception]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > _MAX_TEXT or _CONTROL.search(value):
        raise error(f"{what} must be a string of at most {_MAX_TEXT} printable characters")
    return value


def _clipped(xyxy: Sequence[float], width: int, height: int, what: str) -> XYXY | None:
    """The box clipped to the image, or None when nothing of it lies inside.

    Raises:
        InvalidLabels: not 4 finite numbers, or corners in the wrong order.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
    except (TypeError, ValueError) as exc:
        raise InvalidLabels(f"{what}: xyxy must be 4 numbers, got {xyxy!r}") from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidLabels(f"{what}: coordinates must be finite, got {xyxy!r}")
    if x2 <= x1 or y2 <= y1:
        raise InvalidLabels(f"{what}: needs x1 < x2 and y1 < y2 (pixels, xyxy), got {xyxy!r}")
    box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
           min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    return box if box[2] > box[0] and box[3] > box[1] else None


class FeedbackRecorder:
    """Stores feedback images with YOLO labels and appends their embedded rows.

    Args:
        data_dir: the data root (``paths.DATA_DIR``); files go to ``<data_dir>/feedback/images``
            and ``<data_dir>/feedback/labels``, and the CSV ``image`` column is relative to it.
        embedder: the embedder that also built ``ref_data.csv``.
        ledger: where rows and keys are committed.
        iou_thr: IoU at or above which a ground-truth box and a prediction match.
        export_path: ``prod_data.csv``; feedback is refused (``CsvSchemaError``) while it has
            another header than ``prod_header(embedder.dim)``, as its rows could not go there.
    """

    def __init__(
        self, data_dir: Path, embedder: Embedder, ledger: FeedbackLedger, *,
        iou_thr: float = 0.5, export_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.export_path = export_path
        self.header = prod_header(embedder.dim)
        self.images_dir = self.data_dir / "feedback" / "images"
        self.labels_dir = self.data_dir / "feedback" / "labels"
        self.embedder = embedder
        self.ledger = ledger
        self.iou_thr = iou_thr
        self._header_ok: tuple[int, int] | None = None  # the export file checked last

    def record(
        self,
        image_bytes: bytes,
        gt_boxes: Sequence[tuple[Sequence[float], str]],
        predicted: Sequence[tuple[Sequence[float], str, float]],
        model_version: str,
        request_id: str | None,
        classes: list[str],
        *,
        feedback_id: str | None = None,
        known_embeddings: Mapping[tuple[float, ...], Sequence[float]] | None = None,
        claim: KeyClaim | None = None,
        settle: Settle | None = None,
    ) -> FeedbackResult:
        """Store one feedback image with its label and commit its rows to the store.

        Args:
            image_bytes: the uploaded image (JPEG, PNG, WebP or BMP), stored as is.
            gt_boxes: corrected ground truth, ``(xyxy in pixels, class name)``; empty means
                "nothing to detect here" (a background image, still useful for retraining).
            predicted: what the model answered, ``(xyxy, name, conf)``; may be empty.
            model_version: the version that produced ``predicted``.
            request_id: links the rows to the prediction request, if known.
            classes: the model's class names; a label's index in this list is its YOLO class.
            feedback_id: the id to store under, instead of a new one. The caller makes it
                unique; an idempotent retry passes the same id again, so a retry after a crash
                overwrites the image and label the first attempt may have left behind.
            known_embeddings: vectors already computed by ``self.embedder`` for boxes of this
                image (exact xyxy -> vector, e.g. from ``/predict?embeddings=true``); a row whose
                box is among them is not embedded again (a box embeds to the same bits alone or
                in a batch, so the row is identical either way).
            claim: the feedback's idempotency key, committed with the rows (``feedback_id``
                is then ``claim.feedback_id``); when it is stored already nothing is added.
            settle: the answer's body from (rows written, total), stored with ``claim`` in the
                same commit when it gives one (``FeedbackLedger.commit``).

        Returns:
            The feedback id, the rows written and the store's row total after the commit.

        Raises:
            UnknownClass: a ground-truth name is not in ``classes``.
            InvalidLabels: a malformed or empty box, or a malformed request id.
            UnsupportedImageFormat: an image, but not JPEG, PNG, WebP or BMP.
            InvalidImage: the bytes cannot be decoded.
            ImageTooLarge: the image has more pixels than Pillow agrees to decode.
            ValueError: ``classes`` is empty or uses a reserved name, or ``model_version`` is
                not printable text (the caller's bug, not the user's).
            CsvSchemaError: prod_data.csv has another header (nothing is stored then).
            sqlalchemy.exc.SQLAlchemyError: the store failed (nothing is stored then).
        """
        if not classes or {MISSED, BACKGROUND} & set(classes):
            raise ValueError(f"classes must be non-empty real class names, got {classes}")
        request_id = _text(request_id, "request_id", InvalidLabels)
        model_version = _text(model_version, "model_version", ValueError)
        for _, name in gt_boxes:
            if name not in classes:
                raise UnknownClass(f"unknown class {name!r}; known classes: {list(classes)}")
        # The header first: an unsupported format is refused before any pixel is decoded.
        ext = inspect_image(image_bytes).extension
        image = decode_array(image_bytes)
        height, width = image.shape[:2]

        gt: list[tuple[XYXY, str]] = []
        for k, (xyxy, name) in enumerate(gt_boxes):
            box = _clipped(xyxy, width, height, f"boxes[{k}]")
            if box is None:
                raise InvalidLabels(f"boxes[{k}] lies outside the {width}x{height} image")
            gt.append((box, name))
        pred: list[tuple[XYXY, str, float]] = []
        for k, (xyxy, name, conf) in enumerate(predicted):
            box = _clipped(xyxy, width, height, f"prediction {k}")
            if box is not None:  # a prediction with no area in the image can describe nothing
                pred.append((box, str(name), float(conf)))
        matches = match(gt, pred, self.iou_thr)
        self._check_export_header()

        if claim is not None:
            feedback_id = claim.feedback_id
        if feedback_id is None:
            feedback_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        elif not _FEEDBACK_ID.fullmatch(feedback_id):
            raise ValueError(f"feedback_id {feedback_id!r} is not a safe file name")
        image_path = self.images_dir / f"{feedback_id}.{ext}"
        label_path = self.labels_dir / f"{feedback_id}.txt"
        label = _yolo_label(gt, classes, width, height).encode()
        _write(label_path, label)
        _write(image_path, image_bytes)

        embeddings = self._embed(image, [m.xyxy for m in matches], known_embeddings or {})
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        image_rel = image_path.relative_to(self.data_dir).as_posix()
        rows = [
            ProdRow(tuple(float(v) for v in np.asarray(vector).ravel()), m.target, m.prediction,
                    timestamp, feedback_id, request_id, model_version, image_rel)
            for m, vector in zip(matches, embeddings, strict=True)
        ]
        try:
            committed = self.ledger.commit(rows, claim, model_version, settle)
        except BaseException:
            # Not acknowledged: leave nothing behind for the retrain job to train on.
            image_path.unlink(missing_ok=True)
            label_path.unlink(missing_ok=True)
            raise
        return FeedbackResult(feedback_id, committed.rows_written, committed.prod_rows_total,
                              committed.existing, committed.body)

    def _check_export_header(self) -> None:
        """Refuse feedback while ``prod_data.csv`` has another header. The header is read again
        only when the file is another one (a new inode: moved aside, replaced, restored): the
        exporter appends to it all the time and never changes its first line."""
        if self.export_path is None:
            return
        try:
            st = self.export_path.stat()
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            identity = None
        if identity is not None and identity == self._header_ok:
            return
        check_header(self.export_path, self.header)
        self._header_ok = identity

    def _embed(
        self,
        image: np.ndarray,
        boxes: list[XYXY],
        known: Mapping[tuple[float, ...], Sequence[float]],
    ) -> list[np.ndarray]:
        missing = [box for box in boxes if box not in known]
        computed: dict[XYXY, np.ndarray] = {}
        if missing:
            computed = dict(zip(missing, self.embedder.embed(image, missing), strict=True))
        return [
            computed[box] if box in computed else np.asarray(known[box], dtype=np.float32)
            for box in boxes
        ]


def _write(path: Path, data: bytes) -> None:
    # Temp names end in .tmp, so the retrain job's image listing never picks one up. The folder
    # is made only when it is missing (first feedback, or moved aside): not two mkdirs per call.
    try:
        atomic_write(path, data, temp_suffix=".tmp")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, temp_suffix=".tmp")


def _yolo_label(gt: list[tuple[XYXY, str]], classes: list[str], width: int, height: int) -> str:
    return "".join(
        yolo_label_line(classes.index(name), box, width, height) + "\n" for box, name in gt
    )
