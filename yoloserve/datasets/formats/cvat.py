"""CVAT's "CVAT for images 1.1" XML, read by a small reader of its documented format.

Why not CVAT's SDK: it talks to a CVAT server (the export is an API call there); reading the
exported file needs only the standard library (docs.cvat.ai/docs/manual/advanced/xml_format/).

``SRC`` is ``annotations.xml`` (or a folder with it). Classes: ``meta/task/labels`` or
``meta/project/labels`` (``--classes`` replaces them). Each ``<image name width height
[subset]>`` holds ``<box label xtl ytl xbr ybr>`` in pixels; ``name`` is relative to
``--images``, else ``images/`` beside the file. A project export's ``subset`` (Train,
Validation, Test) is the split; ``default`` is none. Polygons, points and rotated boxes are
not boxes: they are problems.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, ParseError, parse

from yoloserve.datasets.formats.base import DatasetReader, ReadOptions, images_dir_for
from yoloserve.datasets.records import Problem, SourceBox, SourceDataset, SourceImage, split_of
from yoloserve.datasets.validate import UNREADABLE_ANNOTATION

_NOT_BOXES = ("polygon", "polyline", "points", "cuboid", "ellipse", "mask", "skeleton")


def _xml_file(src: Path) -> Path:
    if src.is_file():
        return src
    candidate = src / "annotations.xml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"{src}: no annotations.xml")


def _declared(root: Element) -> list[str]:
    return [str(label.findtext("name")) for label in root.iterfind("meta/*/labels/label")]


class CvatReader(DatasetReader):
    """CVAT for images 1.1 XML."""

    name = "cvat"

    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        file = _xml_file(src)
        images_dir = images_dir_for(file, options)
        problems: list[Problem] = []
        try:
            root = parse(file).getroot()
        except ParseError as exc:
            problems.append(Problem(UNREADABLE_ANNOTATION, str(file), f"not XML: {exc}"))
            return SourceDataset(list(options.classes or []), [], problems)
        classes = list(options.classes or _declared(root))
        images: list[SourceImage] = []
        for node in root.iterfind("image"):
            name = node.get("name", "")
            where = f"image {node.get('id', '?')} ({name})"
            boxes = []
            for box in node.iterfind("box"):
                if float(box.get("rotation") or 0) != 0:
                    problems.append(Problem(UNREADABLE_ANNOTATION, str(file),
                                            f"{where}: a rotated box"))
                    continue
                try:
                    xyxy = tuple(float(box.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
                except (KeyError, ValueError) as exc:
                    problems.append(Problem(UNREADABLE_ANNOTATION, str(file),
                                            f"{where}: box without {exc}"))
                    continue
                boxes.append(SourceBox(xyxy, box.get("label", "")))  # type: ignore[arg-type]
            for kind in _NOT_BOXES:
                if node.find(kind) is not None:
                    problems.append(Problem(UNREADABLE_ANNOTATION, str(file),
                                            f"{where}: has a {kind}, not a box"))
            size = (int(node.get("width", 0)), int(node.get("height", 0)))
            images.append(SourceImage(images_dir / name, boxes,
                                      split_of(node.get("subset") or "default"), file, size))
        return SourceDataset(classes, images, problems)
