"""Build data/ref_data.csv: embeddings of the training split's ground-truth boxes.

Fits the embedder first when its artifact is missing (or with --refit). Rows go through the same
yoloserve.images.decode_array + Embedder.embed path that production feedback uses, so reference
and production rows are comparable column by column.

    python -m scripts.build_ref_data --help
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import Progress

from yoloserve import paths
from yoloserve.embeddings.embedder import DEFAULT_PATH, Embedder
from yoloserve.embeddings.fit import fit_embedder
from yoloserve.feedback.store import CsvStore, embedding_fields, ref_header
from yoloserve.images import IMAGE_SUFFIXES, decode_array
from yoloserve.training.dataset import CLASSES, dataset_names

_ROWS_PER_APPEND = 4096  # one fsync per few thousand rows, not per image

app = typer.Typer(add_completion=False, help=__doc__)

Box = tuple[tuple[float, float, float, float], str]


def class_names(dataset_root: Path) -> list[str]:
    """Class names by index from ``data.yaml`` (``names``), else the synthetic dataset's."""
    return dataset_names(dataset_root) or list(CLASSES)


def read_yolo_label(path: Path, width: int, height: int, names: list[str]) -> list[Box]:
    """Boxes of a YOLO label file (``cls cx cy w h``, normalised) in pixel xyxy with names.

    Raises:
        ValueError: a line is malformed or names a class index outside ``names``.
    """
    boxes: list[Box] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise ValueError(f"{path}:{n}: expected 'cls cx cy w h', got {line!r}")
        cls = int(parts[0])
        if not 0 <= cls < len(names):
            raise ValueError(f"{path}:{n}: class index {cls} outside {names}")
        cx, cy, w, h = (float(v) for v in parts[1:])
        xyxy = ((cx - w / 2) * width, (cy - h / 2) * height,
                (cx + w / 2) * width, (cy + h / 2) * height)
        boxes.append((xyxy, names[cls]))
    return boxes


def split_images(dataset_root: Path, split: str) -> list[Path]:
    """Images of one split, sorted, so every build writes rows in the same order."""
    folder = dataset_root / "images" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run `python -m scripts.train dataset`")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def iter_labelled(
    dataset_root: Path, split: str
) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """Decoded images of a split with their ground-truth boxes (images without labels skipped)."""
    names = class_names(dataset_root)
    for image_path in split_images(dataset_root, split):
        label = dataset_root / "labels" / split / f"{image_path.stem}.txt"
        if not label.exists():
            continue
        image = decode_array(image_path.read_bytes())
        height, width = image.shape[:2]
        yield image, read_yolo_label(label, width, height, names)


def fit_on_dataset(
    dataset_root: Path,
    split: str = "train",
    dim: int = 24,
    progress: Callable[[int], None] | None = None,
) -> Embedder:
    """Fit the embedder on the ground-truth boxes of one split."""
    samples = ((img, [xyxy for xyxy, _ in boxes]) for img, boxes in iter_labelled(dataset_root,
                                                                                 split))
    n_images = len(split_images(dataset_root, split))
    root = dataset_root.resolve()
    shown = root.relative_to(paths.ROOT) if root.is_relative_to(paths.ROOT) else root
    fitted_on = f"{shown.as_posix()}/images/{split}: ground-truth boxes of {n_images} images"
    return fit_embedder(samples, dim=dim, fitted_on=fitted_on, progress=progress)


def build_ref_data(
    dataset_root: Path,
    out_csv: Path,
    embedder: Embedder,
    split: str = "train",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``out_csv`` (columns ``emb_*, target``) from the split's ground-truth boxes.

    The file is built beside the target and moved over it at the end, so readers see either the
    old reference data or the complete new one.

    Args:
        dataset_root: YOLO dataset folder (``images/<split>``, ``labels/<split>``, ``data.yaml``).
        out_csv: the reference CSV to (re)write.
        embedder: the embedder production feedback uses.
        split: which split is the reference.
        progress: called with 1 after each image.

    Returns:
        Rows written.
    """
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(f".{out_csv.name}.building")
    tmp.unlink(missing_ok=True)
    store = CsvStore(tmp, ref_header(embedder.dim))
    pending: list[dict[str, object]] = []
    try:
        for image, boxes in iter_labelled(dataset_root, split):
            vectors = embedder.embed(image, [xyxy for xyxy, _ in boxes])
            pending += [{**embedding_fields(v), "target": name}
                        for v, (_, name) in zip(vectors, boxes, strict=True)]
            if len(pending) >= _ROWS_PER_APPEND:
                store.append(pending)
                pending = []
            if progress:
                progress(1)
        total = store.append(pending)
        os.replace(tmp, out_csv)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.lock").unlink(missing_ok=True)
    return total


@app.command()
def main(
    dataset: Annotated[Path, typer.Option(help="YOLO dataset folder with data.yaml.")] = (
        paths.DATA_DIR / "shapes"
    ),
    split: Annotated[str, typer.Option(help="Split whose ground truth is the reference.")] = (
        "train"
    ),
    out: Annotated[Path, typer.Option(help="Reference CSV to write.")] = (
        paths.DATA_DIR / "ref_data.csv"
    ),
    embedder_path: Annotated[Path, typer.Option(
        "--embedder", help="Embedder artifact (.npz, with its .json beside it).")] = DEFAULT_PATH,
    refit: Annotated[bool, typer.Option(
        help="Fit the embedder again even if the artifact exists (changes its version: "
             "existing prod_data.csv rows are then in another space).")] = False,
    dim: Annotated[int, typer.Option(help="Embedding length when fitting.")] = 24,
) -> None:
    """Fit the embedder if needed, then write the reference CSV."""
    n_images = len(split_images(dataset, split))
    with Progress() as bar:
        if refit or not embedder_path.exists():
            task = bar.add_task(f"fitting embedder on {n_images} images", total=n_images)
            embedder = fit_on_dataset(dataset, split, dim, lambda k: bar.advance(task, k))
            embedder.save(embedder_path)
            bar.console.print(f"fitted embedder {embedder.version}, dim {embedder.dim}")
            prod = paths.DATA_DIR / "prod_data.csv"
            if prod.exists():
                bar.console.print(f"[yellow]warning:[/] {prod} was embedded with the previous "
                                  "embedder; move it aside before new feedback arrives")
        else:
            embedder = Embedder.load(embedder_path)
        task = bar.add_task(f"embedding {n_images} images", total=n_images)
        rows = build_ref_data(dataset, out, embedder, split, lambda k: bar.advance(task, k))
    typer.echo(f"{out}: {rows} rows, embedder {embedder.version}, dim {embedder.dim}")


if __name__ == "__main__":
    app()
