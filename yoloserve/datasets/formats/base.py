"""The interface every source format implements (``factory`` alone imports the readers).

Example:
    >>> from yoloserve.datasets.formats.factory import reader_for
    >>> source = reader_for("coco").read(Path("export/"), ReadOptions())
    >>> source.classes, len(source.images), source.problems
    (['cat', 'dog'], 120, [])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from yoloserve.datasets.records import SourceDataset
from yoloserve.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may be told beside the source path.

    Attributes:
        classes: the declared class names, for formats that declare none (VOC, Label Studio);
            given for another format, it replaces the source's declaration.
        images_dir: where the images are when the annotations name them relative to another
            folder than the reader's default (COCO, Label Studio, CVAT).
    """

    classes: list[str] | None = None
    images_dir: Path | None = None


class DatasetReader(ABC):
    """Reads one source format into ``SourceDataset`` records; never raises for a problem of
    the data (those go to ``SourceDataset.problems``), only for a source it cannot find."""

    name: ClassVar[str]

    @abstractmethod
    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        """Read ``src`` (a file or a folder, as the format has it).

        Raises:
            FileNotFoundError: ``src`` or a file the format requires does not exist.
        """


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def images_dir_for(annotation_file: Path, options: ReadOptions) -> Path:
    """Where images named by a single annotation file are: ``--images``, else ``images/``
    beside the file, else the file's own folder."""
    if options.images_dir is not None:
        return options.images_dir
    beside = annotation_file.parent / "images"
    return beside if beside.is_dir() else annotation_file.parent
