"""Label Studio helpers: ``python -m scripts.labelstudio config`` prints a labeling config.

The config has one ``RectangleLabels`` with a ``Label`` per class of the served model (read from
the gateway's ``GET /models``, or given with ``--classes``), on an ``Image`` whose URL is the
task field ``image``: paste it into the project's Settings > Labeling Interface > Code. The
gateway answers the same at ``GET /labelstudio/config``. See docs/labelstudio.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gateway_client.client import GatewayClient
from yoloserve.labelstudio import labeling_config

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Label Studio helpers."""


@app.command()
def config(
    gateway: Annotated[str, typer.Option(envvar="GATEWAY_URL", help="The gateway whose model's "
                                         "classes are labelled")] = "http://127.0.0.1:8080",
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names instead of "
                                                "asking the gateway")] = None,
    from_name: Annotated[str, typer.Option(help="The RectangleLabels tag's name")] = "label",
    to_name: Annotated[str, typer.Option(help="The Image tag's name")] = "image",
    field: Annotated[str, typer.Option(help="The task data field with the image URL")
                     ] = "image",
) -> None:
    """Print the labeling config for the model's classes."""
    if classes is not None:
        names = [name.strip() for name in classes.split(",") if name.strip()]
    else:
        with GatewayClient(gateway) as client:
            names = client.models().classes
    typer.echo(labeling_config(names, from_name=from_name, to_name=to_name, value_key=field),
               nl=False)


if __name__ == "__main__":
    app()
