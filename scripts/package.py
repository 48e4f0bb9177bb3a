"""Package YOLO weights as a new model version: a TorchServe .mar in models/store and a record in
the registry. Packaging the same weights again reuses their version (see --new-version).

    python -m scripts.package --weights models/default/best.pt          # auto: fastest that passes
    python -m scripts.package --weights models/default/best.pt --runtime onnx
    python -m scripts.package --weights models/default/best.pt --runtime openvino-int8

``auto`` (the default) stages every runtime, gates each (parity with the .pt for the float ones,
mAP for INT8) and keeps the one that answers fastest on this machine, timed here; the version
records the figures and the CPU (``selection``). Every runtime is also scored on the fixed
benchmark set (mAP50 and mAP50-95 against the .pt, recorded as the version's ``accuracy``); an
INT8 runtime is calibrated on the reference training images and refused when either mAP moves by
more than 0.01 (see --no-accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from yoloserve import paths
from yoloserve.datasets import catalog
from yoloserve.errors import YoloServeError
from yoloserve.modelserver.accuracy import AccuracyReport
from yoloserve.modelserver.export import AUTO_RUNTIME, RUNTIMES, is_int8
from yoloserve.modelserver.packaging import AccuracySet, package
from yoloserve.modelserver.parity import ParityReport
from yoloserve.modelserver.registry import open_registry
from yoloserve.store.engine import open_store
from yoloserve.tracking import manifest as manifests

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    weights: Annotated[
        Path, typer.Option(help="Ultralytics .pt weights to package.", exists=True, dir_okay=False)
    ] = paths.DEFAULT_WEIGHTS,
    parent: Annotated[
        str | None, typer.Option(help="Version these weights were fine-tuned from.")
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(help="JSON file of metrics to record; default: metrics.json beside weights."),
    ] = None,
    set_default: Annotated[
        bool | None,
        typer.Option(
            "--set-default/--no-set-default",
            help="Make it the registry's default; unset: only when there is no default yet.",
        ),
    ] = None,
    new_version: Annotated[
        bool, typer.Option(help="Add a new version even if these exact weights were packaged.")
    ] = False,
    database_url: Annotated[
        str, typer.Option(envvar="STORE_DATABASE_URL", help="The store; empty: the SQLite file.")
    ] = "",
    store: Annotated[Path, typer.Option(help="TorchServe model store.")] = paths.STORE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    runtime: Annotated[
        str, typer.Option(help=f"What the handler runs: {', '.join(RUNTIMES)}, or auto (the "
                          "fastest that passes its gate on this machine).")
    ] = AUTO_RUNTIME,
    reference: Annotated[
        Path | None, typer.Option(help="Dataset of calibration (train) and benchmark (test) "
                                  "images; default: the one the weights were trained on "
                                  "(their metrics.json), else data/shapes (generated if missing).")
    ] = None,
    calibration_images: Annotated[
        int, typer.Option(min=1, help="Training images an INT8 runtime is calibrated on.")
    ] = 200,
    benchmark_images: Annotated[
        int, typer.Option(min=1, help="Benchmark images (first of the test split) mAP is on.")
    ] = 150,
    accuracy: Annotated[
        bool, typer.Option(help="Score float runtimes on the benchmark set too (INT8 always).")
    ] = True,
    replace_classes: Annotated[
        bool, typer.Option(help="Serve weights of other classes than the registry's (your "
                           "model replacing the shipped one): the version becomes the default; "
                           "versions of the old classes can no longer serve.")
    ] = False,
) -> None:
    """Build the .mar and record the version; print the version and the archive."""
    calibration, accuracy_set = None, None
    quantized = is_int8(runtime) or runtime == AUTO_RUNTIME  # auto tries the INT8 ones too
    if accuracy or quantized:
        calibration, accuracy_set = reference_images(
            reference or dataset_of(weights), calibration_images, benchmark_images
        )
    try:
        record = package(
            weights,
            open_registry(open_store(database_url or None)),
            parent=parent,
            metrics=json.loads(metrics.read_text()) if metrics else None,
            store_dir=store,
            make_default=set_default,
            reuse=not new_version,
            runtime=runtime,
            calibration=calibration if quantized else None,
            accuracy_set=accuracy_set,
            replace_classes=replace_classes,
        )
    except YoloServeError as exc:
        typer.echo(f"packaging failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    if record.selection:
        timings = ", ".join(f"{k} {v} ms" for k, v in record.selection["p50_ms"].items())
        machine = record.selection["machine"]
        typer.echo(f"auto chose {record.selection['chosen']} ({timings}; "
                   f"{machine['cpu_model']}, {', '.join(machine['cpu_flags'])})")
        for name, why in record.selection["refused"].items():
            typer.echo(f"  refused {name}: {why[:200]}")
    if record.parity:
        typer.echo(ParityReport.model_validate(record.parity).summary())
    if record.accuracy:
        typer.echo(AccuracyReport.model_validate(record.accuracy).summary())
    default = open_registry(open_store(database_url or None)).load().default_version
    typer.echo(
        f"version {record.version}: {store / record.mar} ({record.runtime}, sha256 "
        f"{record.sha256[:12]}, status {record.status}"
        f"{', default' if default == record.version else ''})"
    )


def dataset_of(weights: Path) -> Path:
    """The dataset ``weights`` were trained on: the ``data`` their ``metrics.json`` names
    (``make train`` writes it); else, but for the shipped weights, the imported reference
    (``make import-dataset``); else the synthetic set the shipped model comes from."""
    sidecar = weights.parent / "metrics.json"
    if sidecar.is_file():
        data = json.loads(sidecar.read_text()).get("data")
        if data and Path(data).is_file():
            return Path(data).parent
    shipped = weights.resolve() == paths.DEFAULT_WEIGHTS.resolve()
    imported = None if shipped else catalog.reference_dir()
    return imported if imported is not None else paths.DATA_DIR / "shapes"


def reference_images(
    reference: Path, calibration: int, benchmark: int
) -> tuple[list[Path], AccuracySet]:
    """The first ``calibration`` training images and the fixed benchmark set of ``reference``
    (the synthetic set is written first, as ``python -m scripts.train dataset`` does, when it
    is missing; an imported one is never made up)."""
    imported = reference.resolve().parent == (paths.DATA_DIR / "datasets").resolve()
    if not (reference / "images").is_dir() and not imported:
        from yoloserve.training.dataset import generate_dataset

        typer.echo(f"reference dataset missing: generating it in {reference}", err=True)
        generate_dataset(reference)
    train = manifests.split_images(reference, "images/train")[:calibration]
    found = manifests.benchmark_images(reference, benchmark, or_val=True)
    if found is None or not train:
        typer.echo(f"{reference} has no train or test/val images", err=True)
        raise typer.Exit(1)
    return train, AccuracySet(tuple(found[0]), found[1])


if __name__ == "__main__":
    app()
