"""What a reader hands the importer: images with pixel boxes and class names, in source order.

Every format's reader (``yoloserve.datasets.formats``) turns its files into these records, so
validation, splitting and writing are one code path whatever the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Names sources use for a split, to ours (Roboflow writes "valid").
SPLIT_ALIASES: dict[str, str] = {"train": "train", "val": "val", "valid": "val",
                                 "validation": "val", "test": "test"}


@dataclass(frozen=True)
class SourceBox:
    """One labelled box in pixels of the source image (xyxy, as the source says: unclipped)."""

    xyxy: tuple[float, float, float, float]
    name: str


@dataclass
class SourceImage:
    """One image of the source and its boxes.

    Attributes:
        path: the image file.
        boxes: its labelled boxes (none: a background image).
        split: the source's own split (``train``/``val``/``test``), or None.
        label_file: the annotation file that named the boxes (for the report).
        declared_size: ``(width, height)`` the annotation states, if it states one.
    """

    path: Path
    boxes: list[SourceBox] = field(default_factory=list)
    split: str | None = None
    label_file: Path | None = None
    declared_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the source, with the file it is in."""

    kind: str
    file: str
    detail: str


@dataclass
class SourceDataset:
    """A source as its reader understood it.

    Attributes:
        classes: the declared class names in index order (the source's, or ``--classes``).
        images: every image found, in source order.
        problems: what the reader itself could not read (a label with no image, ...).
    """

    classes: list[str]
    images: list[SourceImage]
    problems: list[Problem] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        """Whether the source says which split each image belongs to."""
        return any(image.split is not None for image in self.images)


def split_of(name: str) -> str | None:
    """Our split for a source's folder or file name (``valid`` -> ``val``), or None.

    Example:
        >>> split_of("valid"), split_of("instances_train2017"), split_of("images")
        ('val', 'train', None)
    """
    lowered = name.lower()
    if lowered in SPLIT_ALIASES:
        return SPLIT_ALIASES[lowered]
    for alias in ("train", "valid", "val", "test"):
        if alias in lowered:
            return SPLIT_ALIASES[alias]
    return None
