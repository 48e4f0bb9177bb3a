"""Pascal VOC XML, converted with supervision's ``DetectionDataset.from_pascal_voc``.

Layout: ``JPEGImages/`` + ``Annotations/`` (the VOC devkit's) or ``images/`` + ``annotations/``;
the split from ``ImageSets/Main/{train,val,test}.txt`` when the source has them. VOC declares
no class list: ``--classes`` declares one (a name outside it is then an undeclared class),
otherwise the names found are the classes, in order of appearance.

Before supervision reads the folder, an XML that does not parse and an XML whose image is
missing are problems, and an unreadable image is left out of its view (validation reports it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from xml.etree.ElementTree import ParseError, parse

from yoloserve.datasets.formats.base import DatasetReader, ReadOptions, list_images
from yoloserve.datasets.formats.supervised import boxes_of, link_view, readable
from yoloserve.datasets.records import Problem, SourceDataset, SourceImage
from yoloserve.datasets.validate import MISSING_IMAGE, UNREADABLE_ANNOTATION


def _first_dir(src: Path, *names: str) -> Path:
    for name in names:
        if (src / name).is_dir():
            return src / name
    raise FileNotFoundError(f"{src}: none of {', '.join(names)}/ exists")


def _splits(src: Path) -> dict[str, str]:
    """Image stem -> split from ``ImageSets/Main``."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        listing = src / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            out.update({line.split()[0]: split for line in listing.read_text().splitlines()
                        if line.strip()})
    return out


class VocReader(DatasetReader):
    """Pascal VOC folders."""

    name = "voc"

    def read(self, src: Path, options: ReadOptions) -> SourceDataset:
        import supervision as sv  # the ml extra's; the gateway never imports a reader

        images_dir = _first_dir(src, "JPEGImages", "images")
        xml_dir = _first_dir(src, "Annotations", "annotations")
        found = list_images(images_dir)
        stems = {p.stem for p in found}
        problems: list[Problem] = []
        bad_xml: set[str] = set()
        for xml in sorted(xml_dir.glob("*.xml")):
            if xml.stem not in stems:
                problems.append(Problem(MISSING_IMAGE, str(xml),
                                        f"no image named {xml.stem}.* in {images_dir}"))
            try:
                parse(xml)
            except ParseError as exc:
                bad_xml.add(xml.stem)
                problems.append(Problem(UNREADABLE_ANNOTATION, str(xml), f"not XML: {exc}"))
        loadable = [p for p in found if p.stem not in bad_xml and readable(p)]
        boxes = {}
        if loadable:
            with tempfile.TemporaryDirectory(prefix="voc-view-") as tmp:
                originals = link_view(loadable, Path(tmp) / "images")
                dataset = sv.DetectionDataset.from_pascal_voc(
                    images_directory_path=str(Path(tmp) / "images"),
                    annotations_directory_path=str(xml_dir))
                boxes = {originals[p]: boxes_of(dataset.annotations[p], dataset.classes)
                         for p in dataset.image_paths}
        split_by_stem = _splits(src)
        images = []
        classes: list[str] = list(options.classes or [])
        for path in found:
            mine = boxes.get(path, [])
            if not options.classes:
                classes += [b.name for b in mine if b.name not in classes]
            xml = xml_dir / f"{path.stem}.xml"
            images.append(SourceImage(path, mine, split_by_stem.get(path.stem),
                                      xml if xml.exists() else None))
        return SourceDataset(classes, images, problems)
