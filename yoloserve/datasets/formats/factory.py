"""The one place that imports every reader: a format name to its reader."""

from __future__ import annotations

from yoloserve.datasets.formats.base import DatasetReader
from yoloserve.datasets.formats.coco import CocoReader
from yoloserve.datasets.formats.cvat import CvatReader
from yoloserve.datasets.formats.labelstudio import LabelStudioReader
from yoloserve.datasets.formats.voc import VocReader
from yoloserve.datasets.formats.yolo import YoloReader

_READERS: dict[str, type[DatasetReader]] = {
    reader.name: reader
    for reader in (YoloReader, CocoReader, VocReader, LabelStudioReader, CvatReader)
}
FORMATS: tuple[str, ...] = tuple(_READERS)


def reader_for(format_name: str) -> DatasetReader:
    """The reader of ``format_name`` (one of ``FORMATS``).

    Raises:
        ValueError: no reader of that name.
    """
    try:
        return _READERS[format_name]()
    except KeyError:
        raise ValueError(f"unknown format {format_name!r}; one of {', '.join(FORMATS)}") from None
