"""First start of a platform: what must exist before the services can do their work.

1. the shipped model and embedder in ``models/`` (copied from ``--seed`` when missing: the
   trainer image carries them, an empty models volume does not);
2. ``data/ref_data.csv``, the reference embeddings, built from the synthetic training set
   (generated first when missing);
3. a default version in the registry: the shipped weights packaged as a TorchServe ``.mar``.

Each step is skipped when its result exists, so running it on every `make demo` / `make up` is
cheap and safe. ``make demo`` calls the functions; the compose stack runs the module once, as its
``bootstrap`` service.

    python -m scripts.bootstrap [--seed /app/seed]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from scripts.package import reference_images
from yoloserve import paths
from yoloserve.modelserver.export import AUTO_RUNTIME, is_int8
from yoloserve.modelserver.packaging import package
from yoloserve.modelserver.registry import Registry, open_registry

app = typer.Typer(add_completion=False, help=__doc__)


def _say(message: str) -> None:
    typer.echo(f"[bootstrap] {message}")


def seed_models(seed: Path) -> None:
    """Copy ``seed/models/*`` into the models folder where absent (never overwrites)."""
    source = seed / "models"
    if not source.is_dir():
        return
    for item in sorted(source.iterdir()):
        target = paths.MODELS_DIR / item.name
        if not target.exists():
            _say(f"seeding {target} from {item}")
            shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)


def ensure_reference_data() -> None:
    """data/ref_data.csv from the training set's ground truth (dataset generated if missing)."""
    if (paths.DATA_DIR / "ref_data.csv").is_file():
        return
    if not (paths.DATA_DIR / "shapes" / "data.yaml").is_file():
        _say("generating the synthetic training set (data/shapes) ...")
        subprocess.run([sys.executable, "-m", "scripts.train", "dataset"], check=True,
                       cwd=paths.ROOT)
    _say("building data/ref_data.csv (reference embeddings) ...")
    subprocess.run([sys.executable, "-m", "scripts.build_ref_data"], check=True, cwd=paths.ROOT)


def ensure_model(registry: Registry, runtime: str = AUTO_RUNTIME) -> str:
    """The registry's default version, packaging the shipped weights first if there is none.

    ``auto`` (the default) serves the runtime that answers fastest on this machine among those
    that pass their gate, INT8 included (calibrated on the reference training images, gated on
    the benchmark set): about a minute and a half of packaging on 2 cores, once.
    """
    data = registry.load()
    version = data.default_version
    if version is not None and (paths.STORE_DIR / data.get(version).mar).is_file():
        return version
    _say(f"packaging {paths.DEFAULT_WEIGHTS} as a TorchServe .mar ({runtime}) ...")
    calibration, accuracy_set = None, None
    if runtime == AUTO_RUNTIME or is_int8(runtime):
        calibration, accuracy_set = reference_images(paths.DATA_DIR / "shapes", 200, 150)
    # package() records the metrics.json that ships beside the weights.
    record = package(paths.DEFAULT_WEIGHTS, registry, make_default=True, runtime=runtime,
                     calibration=calibration, accuracy_set=accuracy_set)
    if record.selection:
        _say(f"auto chose {record.runtime}: {record.selection['p50_ms']} ms on "
             f"{record.selection['machine']['cpu_model']}")
    return record.version


@app.command()
def main(
    seed: Annotated[Path | None, typer.Option(
        help="Folder whose models/ fills a missing shipped model (the trainer image's /app/seed)."
    )] = None,
    runtime: Annotated[str, typer.Option(
        envvar="BOOTSTRAP_RUNTIME",
        help="What the shipped model is packaged for: a runtime, or auto (the fastest that "
        "passes its gate here).",
    )] = AUTO_RUNTIME,
) -> None:
    """Seed, build the reference data, package the default model: whatever is missing."""
    seed = seed or paths.ROOT / "seed"
    seed_models(seed)
    paths.DATA_DIR.mkdir(parents=True, exist_ok=True)
    ensure_reference_data()
    version = ensure_model(open_registry(), runtime)
    _say(f"ready: serving default v{version}, reference data {paths.DATA_DIR / 'ref_data.csv'}")


if __name__ == "__main__":
    app()
