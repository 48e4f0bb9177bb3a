"""Import labelled datasets into the project's YOLO layout, and export the collected labels.

    python -m scripts.datasets import --help
    python -m scripts.datasets export --help
    python -m scripts.datasets bench --images 1000

An import validates first and lists every problem (a table, and ``--report-json``); nothing is
written unless the whole source is valid. With ``--reference`` (the default) the new dataset's
train split rebuilds ``data/ref_data.csv`` through ``scripts.build_ref_data`` (the embedder
path feedback uses), and the store marks it as the reference.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from scripts.build_ref_data import build_ref_data, fit_on_dataset
from yoloserve import paths
from yoloserve.datasets import catalog
from yoloserve.datasets.export import EXPORT_FORMATS, export_feedback
from yoloserve.datasets.formats.base import ReadOptions
from yoloserve.datasets.formats.factory import FORMATS
from yoloserve.datasets.importer import ImportResult, SplitPlan, import_dataset
from yoloserve.datasets.records import Problem
from yoloserve.datasets.validate import report_json
from yoloserve.embeddings.embedder import DEFAULT_PATH, Embedder
from yoloserve.errors import (
    DatasetExists,
    DatasetInvalid,
    UnsupportedExportFormat,
    YoloServeError,
)
from yoloserve.modelserver.registry import open_registry
from yoloserve.store.engine import Store, open_store

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console()


def problems_table(problems: list[Problem]) -> Table:
    """The validation report as a rich table."""
    table = Table(title=f"{len(problems)} problems", show_lines=False)
    for column in ("kind", "file", "detail"):
        table.add_column(column, overflow="fold")
    for problem in problems:
        table.add_row(problem.kind, problem.file, problem.detail)
    return table


def rebuild_reference(dataset: Path, refit: bool, out: Path, embedder_path: Path) -> int:
    """``ref_data.csv`` from the dataset's train split, as ``scripts.build_ref_data`` does."""
    with Progress(console=console) as bar:
        n = len(list((dataset / "images" / "train").iterdir()))
        if refit:
            task = bar.add_task(f"refitting the embedder on {n} images", total=n)
            embedder = fit_on_dataset(dataset, "train", progress=lambda k: bar.advance(task, k))
            embedder.save(embedder_path)
        else:
            embedder = Embedder.load(embedder_path)
        task = bar.add_task(f"embedding {n} reference images", total=n)
        rows = build_ref_data(dataset, out, embedder, "train", lambda k: bar.advance(task, k))
    what = "refitted" if refit else "kept the current"
    console.print(f"{out}: {rows} rows; {what} embedder {embedder.version} (dim {embedder.dim})"
                  + ("" if refit else "; --refit-embedder fits it to a new domain"))
    return rows


def run_import(src: Path, format_name: str, name: str, store: Store, data_dir: Path,
               options: ReadOptions, plan: SplitPlan, replace: bool) -> ImportResult:
    """``import_dataset`` with rich progress bars (what ``bench`` times, bars included)."""
    with Progress(console=console, transient=True) as bar:
        def phase(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda k: bar.advance(task, k)

        return import_dataset(src, format_name, name, store, data_dir, options=options,
                              plan=plan, replace=replace, progress=phase)


@app.command("import")
def import_command(
    src: Annotated[Path, typer.Argument(help="The source: a folder (yolo, voc, coco) or the "
                                        "export file (coco .json, labelstudio .json, cvat .xml).")],
    format_name: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")],
    name: Annotated[str | None, typer.Option(help="Dataset name: data/datasets/<name>/ "
                                             "(default: the source's name).")] = None,
    classes: Annotated[str | None, typer.Option(help="Declared class names, comma-separated, "
                                                "in index order; required in spirit for voc and "
                                                "labelstudio, which declare none (otherwise the "
                                                "names found are the classes).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder the annotations' image names are "
                                                "relative to (coco, labelstudio, cvat; default: "
                                                "images/ beside the file).")] = None,
    val: Annotated[float, typer.Option(help="Fraction for val when the source has no split.")]
    = 0.1,
    test: Annotated[float, typer.Option(help="Fraction for test when the source has no split "
                                        "(0: no test split).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of that split.")] = 0,
    replace: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
    reference: Annotated[bool, typer.Option(help="Make it the reference: rebuild "
                                            "data/ref_data.csv from its train split.")] = True,
    refit_embedder: Annotated[bool, typer.Option(help="Refit the embedder on the new boxes (a "
                                                 "new domain; existing prod_data.csv rows are "
                                                 "then in another space). Default: keep it.")]
    = False,
    report_json_path: Annotated[Path | None, typer.Option("--report-json", help="Also write "
                                                          "the validation report here.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The data root.")] = paths.DATA_DIR,
) -> None:
    """Validate a labelled dataset and import it into data/datasets/<name>/ (YOLO layout)."""
    name = name or src.stem
    store = open_store()
    options = ReadOptions(classes=classes.split(",") if classes else None, images_dir=images)
    try:
        result = run_import(src, format_name, name, store, data_dir, options,
                            SplitPlan(val=val, test=test, seed=seed), replace)
    except DatasetInvalid as exc:
        problems = [p for p in exc.problems if isinstance(p, Problem)]
        console.print(problems_table(problems))
        if report_json_path:
            report_json_path.write_text(report_json(problems))
        console.print(f"[red]not imported:[/] {exc.message}; nothing was written")
        raise typer.Exit(1) from exc
    except DatasetExists as exc:
        console.print(f"[red]not imported:[/] {exc.message}")
        raise typer.Exit(1) from exc
    except (YoloServeError, FileNotFoundError, ValueError) as exc:
        # A missing source, an unknown format, a bad name or split: the command line is wrong.
        console.print(f"[red]not imported:[/] {getattr(exc, 'message', None) or exc}")
        raise typer.Exit(2) from exc
    if report_json_path:
        report_json_path.write_text(report_json([]))
    counts = ", ".join(f"{s} {c['images']} images / {c['boxes']} boxes"
                       for s, c in result.record.counts.items())
    console.print(f"imported {name} ({format_name}) into {result.folder} in "
                  f"{result.seconds:.2f} s: {counts}; classes {result.record.classes}")
    if reference:
        rebuild_reference(result.folder, refit_embedder, data_dir / "ref_data.csv", DEFAULT_PATH)
        catalog.set_reference(store, name)
        console.print(f"{name} is the reference dataset")


@app.command("export")
def export_command(
    format_name: Annotated[str, typer.Option("--format", help=f"One of "
                                             f"{', '.join(EXPORT_FORMATS)}.")],
    out: Annotated[Path, typer.Option(help="A .zip file, or a folder to write.")],
    data_dir: Annotated[Path, typer.Option(help="The data root (feedback/).")] = paths.DATA_DIR,
) -> None:
    """Export the labels collected from feedback (and labelled review items) as YOLO or COCO."""
    store = open_store()
    data = open_registry(store).load(jobs=False)
    try:
        result = export_feedback(store, data_dir, data.classes, format_name, out,
                                 data.version_classes)
    except YoloServeError as exc:  # an unknown format, nothing collected yet
        console.print(f"[red]not exported:[/] {exc.message}")
        raise typer.Exit(2 if isinstance(exc, UnsupportedExportFormat) else 1) from exc
    console.print(f"{out}: {result.images} images, {result.boxes} boxes"
                  + (f", {result.skipped} feedbacks skipped (files missing)"
                     if result.skipped else ""))


def benchmark_import(n_images: int, workdir: Path, format_name: str = "yolo") -> float:
    """Seconds to import ``n_images`` synthetic shape images (a YOLO source, no split) into a
    throwaway store under ``workdir``; the reference is not rebuilt."""
    from yoloserve.training.dataset import write_data_yaml, write_split

    src = workdir / "src"
    write_split(src, "all", n_images, seed=0)
    shutil.move(src / "images" / "all", src / "flat")
    shutil.move(src / "labels" / "all", src / "flat-labels")
    shutil.rmtree(src / "images")
    shutil.rmtree(src / "labels")
    shutil.move(src / "flat", src / "images")
    shutil.move(src / "flat-labels", src / "labels")
    write_data_yaml(src, splits=())
    store = Store.sqlite(workdir / "bench.db")
    started = time.perf_counter()
    run_import(src, format_name, "bench", store, workdir / "data", ReadOptions(), SplitPlan(),
               False)
    return time.perf_counter() - started


@app.command("bench")
def bench_command(
    n_images: Annotated[int, typer.Option("--images", help="How many images to import.")]
    = 1000,
) -> None:
    """Time an import of N synthetic images (YOLO source), printing the seconds."""
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        seconds = benchmark_import(n_images, Path(tmp))
    console.print(f"imported {n_images} images in {seconds:.2f} s "
                  f"({n_images / seconds:.0f} images/s)")


#: The sample's classes: our shapes renamed, so trying the path shows a model of other classes.
SAMPLE_CLASSES = {"circle": "ball", "square": "crate", "triangle": "tent"}


@app.command("sample")
def sample_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample into (created).")],
    format_name: Annotated[str, typer.Option("--format", help="yolo, coco or voc.")] = "coco",
    n_images: Annotated[int, typer.Option("--images", min=4, help="How many images.")] = 200,
    seed: Annotated[int, typer.Option(help="Same seed, same images.")] = 0,
) -> None:
    """Write a labelled sample dataset (shapes on scikit-image's photos, classes ball/crate/tent)
    in FORMAT, by supervision's own writers: something to try import, train and serve on."""
    import supervision as sv
    import yaml

    from yoloserve.training.dataset import generate_dataset

    if format_name not in {"yolo", "coco", "voc"}:
        raise typer.BadParameter("yolo, coco or voc", param_hint="--format")
    with tempfile.TemporaryDirectory(prefix="sample-") as tmp:
        with Progress(console=console) as bar:
            task = bar.add_task(f"drawing {n_images} images", total=n_images)
            data_yaml = generate_dataset(Path(tmp), n_images, 0, 0, seed=seed,
                                         background="photo",
                                         progress=lambda k: bar.advance(task, k))
        spec = yaml.safe_load(data_yaml.read_text())
        spec["names"] = {k: SAMPLE_CLASSES[v] for k, v in spec["names"].items()}
        data_yaml.write_text(yaml.safe_dump(spec))
        dataset = sv.DetectionDataset.from_yolo(
            images_directory_path=str(Path(tmp) / "images" / "train"),
            annotations_directory_path=str(Path(tmp) / "labels" / "train"),
            data_yaml_path=str(data_yaml))
        out.mkdir(parents=True, exist_ok=True)
        if format_name == "coco":
            dataset.as_coco(images_directory_path=str(out / "images"),
                            annotations_path=str(out / "annotations.json"))
        elif format_name == "voc":
            dataset.as_pascal_voc(images_directory_path=str(out / "images"),
                                  annotations_directory_path=str(out / "annotations"))
        else:
            dataset.as_yolo(images_directory_path=str(out / "images"),
                            annotations_directory_path=str(out / "labels"),
                            data_yaml_path=str(out / "data.yaml"))
    src = out / "annotations.json" if format_name == "coco" else out
    console.print(f"wrote {len(dataset)} labelled images ({format_name}) into {out}; import: "
                  f"make import-dataset SRC={src} FORMAT={format_name} NAME=sample")


if __name__ == "__main__":
    app()
