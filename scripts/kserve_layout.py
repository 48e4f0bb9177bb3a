"""Write the storage layout our KServe runtime (yoloserve-torchserve) serves from our registry:
DIR/config/config.properties (model_snapshot naming the default version) + DIR/model-store/*.mar.

    python -m scripts.kserve_layout --out models/kserve/yolo            # the default version
    python -m scripts.kserve_layout --out models/kserve/yolo --all-versions

On a cluster, run it where the models volume is mounted (a gateway pod: ``--out
/models/kserve/yolo``), the folder the InferenceService's storageUri
(pvc://yoloserve-models/kserve/yolo) names. See docs/kubernetes.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yoloserve import paths
from yoloserve.errors import YoloServeError
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.kserve_layout import write_kserve_layout
from yoloserve.modelserver.registry import open_registry
from yoloserve.store.engine import open_store

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    out: Annotated[
        Path,
        typer.Option(
            help="Layout folder to write (created): config/ and model-store/ go inside.",
            file_okay=False,
        ),
    ],
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions/--default-only",
            help="Also copy every version that was not rejected (pinned requests keep working);"
            " by default only the registry's default version.",
        ),
    ] = False,
    database_url: Annotated[
        str, typer.Option(envvar="STORE_DATABASE_URL", help="The store; empty: the SQLite file.")
    ] = "",
    store: Annotated[
        Path, typer.Option(help="Model store the .mar files are copied from.")
    ] = paths.STORE_DIR,
    model_name: Annotated[str, typer.Option(help="Name the model is served under.")] = MODEL_NAME,
) -> None:
    """Copy the .mar file(s) and write config.properties; print what was written."""
    try:
        root = write_kserve_layout(
            open_registry(open_store(database_url or None)), store, out, model_name,
            all_versions=all_versions
        )
    except YoloServeError as exc:
        typer.echo(f"kserve layout failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for mar in sorted((root / "model-store").glob("*.mar")):
        typer.echo(f"{mar}")
    typer.echo(f"{root / 'config' / 'config.properties'}")


if __name__ == "__main__":
    app()
