"""What the platform collected: each feedback's image, YOLO label and the version it corrected,
and which class names a label's indices refer to.

A label file holds class indices into the registry's classes *of the time it was written*.
When a model of other classes replaced the served one (``--replace-classes``), older feedback
still indexes the old names: its version's recorded ``classes`` say which. The export maps
those labels to names; a retrain leaves them out (:func:`other_class_feedback`).

Example:
    >>> label_classes({"1": ["circle"], "2": ["ball"]}, ["ball"], "1")
    ['circle']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from yoloserve.store.engine import Store
from yoloserve.store.tables import FeedbackRowRecord


@dataclass(frozen=True)
class Collected:
    """One feedback: its image, its YOLO label and the model version its rows name."""

    feedback_id: str
    image: Path
    label: Path
    model_version: str


def collected(store: Store, data_dir: Path) -> Iterator[Collected]:
    """Each feedback in the store with an image (first row's ``image``), oldest first."""
    with store.read() as session:
        rows = session.execute(
            select(FeedbackRowRecord.feedback_id, func.min(FeedbackRowRecord.image),
                   func.min(FeedbackRowRecord.model_version),
                   func.min(FeedbackRowRecord.id).label("first"))
            .group_by(FeedbackRowRecord.feedback_id).order_by("first")).all()
    for feedback_id, image, version, _ in rows:
        yield Collected(feedback_id, Path(data_dir) / image,
                        Path(data_dir) / "feedback" / "labels" / f"{feedback_id}.txt",
                        str(version))


def label_classes(versions: Mapping[str, list[str]], current: list[str], version: str
                  ) -> list[str]:
    """The names a label of ``version`` indexes: the version's recorded classes, else (a
    record older than class changes, or an unknown version) the current ones."""
    return list(versions.get(version) or current)


def other_class_feedback(store: Store, versions: Mapping[str, list[str]], current: list[str]
                         ) -> set[str]:
    """Feedback ids recorded under other class names than ``current`` (before a class change).

    Args:
        versions: each version's recorded classes (``ModelVersion.classes``; [] = unknown).
        current: the registry's classes.
    """
    other = [v for v, names in versions.items() if names and list(names) != list(current)]
    if not other:
        return set()
    with store.read() as session:
        found = session.scalars(select(FeedbackRowRecord.feedback_id).distinct()
                                .where(FeedbackRowRecord.model_version.in_(other))).all()
    return set(found)
