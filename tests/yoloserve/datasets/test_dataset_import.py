"""Import from every format to the same boxes; every kind of problem in one report; nothing left
behind by a failed import. Sources are written by the format's own tool where one exists
(supervision's ``as_yolo``/``as_coco``/``as_pascal_voc``); Label Studio and CVAT files follow
their documented JSON/XML shapes (labelstud.io export format, CVAT for images 1.1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
from PIL import Image

from tests.yoloserve.datasets.conftest import CLASSES, assert_same_boxes, read_back
from yoloserve.datasets import catalog
from yoloserve.datasets.formats.base import ReadOptions
from yoloserve.datasets.importer import SplitPlan, import_dataset
from yoloserve.errors import DatasetExists, DatasetInvalid
from yoloserve.store.engine import Store

Truth = dict[str, list[tuple[tuple[float, ...], str]]]
PLAN = SplitPlan(val=0.2, test=0.1, seed=3)


def _sv_dataset(truth: Truth):  # noqa: ANN202  (supervision is imported lazily)
    import supervision as sv

    annotations = {}
    for path, boxes in truth.items():
        annotations[path] = sv.Detections(
            xyxy=np.array([b for b, _ in boxes], dtype=float).reshape(-1, 4),
            class_id=np.array([CLASSES.index(n) for _, n in boxes], dtype=int))
    return sv.DetectionDataset(classes=CLASSES, images=list(truth), annotations=annotations)


def write_source(fmt: str, truth: Truth, src: Path) -> Path:
    """``truth`` written as ``fmt`` under ``src``; the path to import."""
    if fmt == "yolo":
        _sv_dataset(truth).as_yolo(str(src / "images"), str(src / "labels"),
                                   str(src / "data.yaml"))
        return src
    if fmt == "coco":
        _sv_dataset(truth).as_coco(str(src / "images"), str(src / "annotations.json"))
        return src / "annotations.json"
    if fmt == "voc":
        _sv_dataset(truth).as_pascal_voc(str(src / "JPEGImages"), str(src / "Annotations"))
        return src
    (src / "images").mkdir(parents=True)
    for path in truth:
        shutil.copy(path, src / "images")
    if fmt == "labelstudio":
        tasks = []
        for k, (path, boxes) in enumerate(truth.items()):
            with Image.open(path) as image:
                width, height = image.size
            result = [{"id": f"r{k}-{j}", "type": "rectanglelabels", "from_name": "label",
                       "to_name": "image", "original_width": width, "original_height": height,
                       "value": {"x": x1 / width * 100, "y": y1 / height * 100,
                                 "width": (x2 - x1) / width * 100,
                                 "height": (y2 - y1) / height * 100, "rotation": 0,
                                 "rectanglelabels": [name]}}
                      for j, ((x1, y1, x2, y2), name) in enumerate(boxes)]
            # Label Studio stores uploads as /data/upload/<project>/<8 hex>-<name>.
            tasks.append({"id": k + 1, "data": {"image": f"/data/upload/1/0a1b2c3d-"
                                                          f"{Path(path).name}"},
                          "annotations": [{"id": k + 1, "was_cancelled": False,
                                           "result": result}]})
        (src / "export.json").write_text(json.dumps(tasks))
        return src / "export.json"
    labels = "".join(f"<label><name>{n}</name></label>" for n in CLASSES)
    images = []
    for k, (path, boxes) in enumerate(truth.items()):
        with Image.open(path) as image:
            width, height = image.size
        inner = "".join(f'<box label={quoteattr(n)} occluded="0" xtl="{x1}" ytl="{y1}" '
                        f'xbr="{x2}" ybr="{y2}"/>' for (x1, y1, x2, y2), n in boxes)
        images.append(f'<image id="{k}" name="{Path(path).name}" width="{width}" '
                      f'height="{height}">{inner}</image>')
    (src / "annotations.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task>'
        f'<labels>{labels}</labels></task></meta>{"".join(images)}</annotations>')
    return src / "annotations.xml"


def _want(truth: Truth) -> Truth:
    return {Path(p).stem: sorted(b, key=lambda x: (x[1], x[0])) for p, b in truth.items()}


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc", "labelstudio", "cvat"])
def test_every_format_imports_to_the_same_boxes(fmt: str, truth: Truth, tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    src = write_source(fmt, truth, tmp_path / "src")
    options = ReadOptions(classes=CLASSES if fmt in ("voc", "labelstudio") else None)

    result = import_dataset(src, fmt, f"ds-{fmt}", store, tmp_path / "data", options=options,
                            plan=PLAN)

    assert_same_boxes(read_back(result.folder), _want(truth))
    record = catalog.get(store, f"ds-{fmt}")
    assert record is not None and record.classes == CLASSES
    assert {s: c["images"] for s, c in record.counts.items()} == {"train": 7, "val": 2, "test": 1}
    assert sum(c["boxes"] for c in record.counts.values()) == sum(map(len, truth.values()))
    assert not list((tmp_path / "data" / "datasets").glob(".*"))


def test_coco_import_agrees_with_ultralytics_convert_coco(truth: Truth, tmp_path: Path) -> None:
    from ultralytics.data.converter import convert_coco

    src = write_source("coco", truth, tmp_path / "src")
    categories = {c["id"]: c["name"] for c in json.loads(src.read_text())["categories"]}
    convert_coco(labels_dir=str(src.parent), save_dir=str(tmp_path / "ul"), use_segments=False,
                 cls91to80=False)
    result = import_dataset(src, "coco", "c", Store.sqlite(tmp_path / "s.db"), tmp_path / "data",
                            plan=PLAN)
    ours = read_back(result.folder)
    for label in (tmp_path / "ul" / "labels" / "annotations").glob("*.txt"):
        with Image.open(next((src.parent / "images").glob(f"{label.stem}.*"))) as image:
            width, height = image.size
        theirs = []
        for line in label.read_text().splitlines():
            cls, cx, cy, w, h = (float(v) for v in line.split())
            theirs.append((((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                            (cy + h / 2) * height), categories[int(cls) + 1]))
        assert_same_boxes({label.stem: ours[label.stem]},
                          {label.stem: sorted(theirs, key=lambda b: (b[1], b[0]))}, tol=1.0)


def _broken_yolo(src: Path, photos: list[Path]) -> None:
    """Every problem at once, in a YOLO source with train/val folders."""
    for split in ("train", "val"):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
    (src / "data.yaml").write_text("names: [circle, square]\n")
    train_images, train_labels = src / "images" / "train", src / "labels" / "train"
    for k, photo in enumerate(photos[:3]):
        shutil.copy(photo, train_images / f"p{k}.png")
    (train_labels / "p0.txt").write_text("0 0.95 0.5 0.3 0.2\n")  # right edge beyond the image
    (train_labels / "p1.txt").write_text("1 0.5 0.5 0 0.2\n")  # no width
    (train_labels / "p2.txt").write_text("7 0.5 0.5 0.2 0.2\n")  # class 7 is not declared
    (train_labels / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no ghost.* image
    (train_images / "broken.jpg").write_bytes(b"not a jpeg at all")
    shutil.copy(photos[0], train_images / "dup.png")
    shutil.copy(photos[0], train_images / "dup.jpg")  # both would be labelled dup.txt


def test_a_broken_source_reports_every_problem_and_leaves_nothing(tmp_path: Path) -> None:
    photos = sorted((Path(__file__).parents[3] / "yoloserve" / "modelserver" / "parity_images")
                    .glob("*.jpg"))
    png = []
    for k, photo in enumerate(photos[:3]):
        png.append(tmp_path / f"{k}.png")
        Image.open(photo).save(png[-1])
    _broken_yolo(tmp_path / "src", png)
    store = Store.sqlite(tmp_path / "store.db")

    with pytest.raises(DatasetInvalid) as raised:
        import_dataset(tmp_path / "src", "yolo", "bad", store, tmp_path / "data")

    kinds = {(p.kind, Path(p.file).name) for p in raised.value.problems}
    assert {("box_outside_image", "p0.txt"), ("zero_area_box", "p1.txt"),
            ("unknown_class", "p2.txt"), ("missing_image", "ghost.txt"),
            ("unreadable_image", "broken.jpg"), ("duplicate_name", "dup.png"),
            ("duplicate_name", "dup.jpg"), ("empty_split", "val")} <= kinds
    assert not (tmp_path / "data" / "datasets").exists()
    assert catalog.list_datasets(store) == []


def test_an_existing_name_is_refused_unless_replaced(truth: Truth, tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    src = write_source("cvat", truth, tmp_path / "src")
    import_dataset(src, "cvat", "same", store, tmp_path / "data", plan=PLAN)
    with pytest.raises(DatasetExists):
        import_dataset(src, "cvat", "same", store, tmp_path / "data", plan=PLAN)
    replaced = import_dataset(src, "cvat", "same", store, tmp_path / "data", replace=True,
                              plan=SplitPlan(val=0.3, test=0.0, seed=1))
    assert set(replaced.record.counts) == {"train", "val"}
    assert [d.name for d in catalog.list_datasets(store)] == ["same"]


def test_the_reference_is_one_dataset_and_its_folder(truth: Truth, tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "store.db")
    src = write_source("cvat", truth, tmp_path / "src")
    for name in ("a", "b"):
        import_dataset(src, "cvat", name, store, tmp_path / "data", plan=PLAN)
    assert catalog.reference(store) is None
    catalog.set_reference(store, "a")
    catalog.set_reference(store, "b")
    found = catalog.reference(store)
    assert found is not None and found.name == "b"
    assert [d.is_reference for d in catalog.list_datasets(store)] == [False, True]


def test_regions_that_are_not_boxes_are_reported_not_dropped(truth: Truth,
                                                             tmp_path: Path) -> None:
    src = write_source("labelstudio", truth, tmp_path / "src")
    tasks = json.loads(src.read_text())
    tasks[0]["annotations"][0]["result"] += [
        {"id": "poly", "type": "polygonlabels", "from_name": "label", "to_name": "image",
         "original_width": 100, "original_height": 100,
         "value": {"points": [[1, 1], [5, 1], [3, 4]], "polygonlabels": ["circle"]}},
        {"id": "note", "type": "choices", "from_name": "q", "to_name": "image",
         "value": {"choices": ["blurry"]}},
    ]
    src.write_text(json.dumps(tasks))
    store = Store.sqlite(tmp_path / "store.db")
    with pytest.raises(DatasetInvalid) as raised:
        import_dataset(src, "labelstudio", "regions", store, tmp_path / "data",
                       options=ReadOptions(classes=CLASSES))
    details = [p.detail for p in raised.value.problems]
    assert any("result poly is a polygonlabels region" in d for d in details), details
    assert not any("note" in d for d in details), "a choice is not a region"
