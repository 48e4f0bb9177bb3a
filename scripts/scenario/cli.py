"""Drift scenario against the running platform (`make demo`): shifted data in, retrained model out.

Production changes under the model: the same shapes now arrive on real photographs, drawn
translucent so the photo shows through (``yoloserve.training.dataset``'s ``background="photo"`` and
``opacity``). The scenario plays it through the public API, as users would:

1. generate the shifted images: a production set sent before the retrain, a second one sent
   after it, and a held-out test set (YOLO format) that is never sent;
2. evaluate the serving default version's mAP50 on the held-out set (Ultralytics validator, on
   the weights inside its ``.mar``);
3. send production images through ``POST /predict`` and ``POST /feedback`` with their true
   labels until the feedback loop triggers a retrain (every k rows; if it does not within
   ``--images``, the retrain is started with ``POST /retrain`` and the output says so);
4. force a reporting run over those feedback rows and read drift share and F1 back from the
   Evidently workspace (``python -m reporting run-once`` / ``latest``): before the retrain;
5. wait for the retrain job (``GET /retrain/{job_id}``) and the hot swap (``GET /models``);
6. evaluate the new default's mAP50 on the held-out set, send the second production set, run the
   reporting again over those rows, and print the before/after table.

The exit code is 0 when both goals hold (drift flagged before the retrain; mAP50 gain on the
shifted test set >= ``--min-gain``), 1 when one does not, 2 when the scenario could not run.
Results also go to ``<out>/scenario_result.json``.

    python -m scripts.scenario                 # full run (make scenario)
    python -m scripts.scenario --images 60     # a quick check
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from scripts.scenario.errors import ScenarioError
from scripts.scenario.feedback import connect
from scripts.scenario.keys import DEMO_ENV, resolve_keys
from scripts.scenario.output import console
from scripts.scenario.play import play
from scripts.scenario.report import print_table
from yoloserve import paths

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=False)

DEFAULT_OUT = paths.DATA_DIR / "shifted"


@app.command()
def main(
    gateway_url: Annotated[
        str, typer.Option(envvar="SCENARIO_GATEWAY_URL", help="Gateway base URL.")
    ] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SCENARIO_API_KEY", help="User key for /feedback (default: the "
                     "first GATEWAY_API_KEYS of --env-file)."),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="SCENARIO_ADMIN_KEY", help="Admin key, only needed when the loop "
                     "does not trigger a retrain (default: from --env-file)."),
    ] = None,
    env_file: Annotated[
        Path, typer.Option(help="Key file written by `make demo`.")
    ] = DEMO_ENV,
    images: Annotated[
        int, typer.Option(min=1, help="Most shifted images sent before the retrain.")
    ] = 300,
    min_images: Annotated[
        int,
        typer.Option(min=1, help="Keep feeding the loop (more rounds of feedback and retrain) "
                     "until its retrains have seen this many shifted images."),
    ] = 20,
    after_images: Annotated[
        int | None,
        typer.Option(min=1, help="Shifted images sent after it (default: images / 2, >= 20)."),
    ] = None,
    test_images: Annotated[
        int, typer.Option(min=5, help="Held-out shifted images for mAP50 (never sent).")
    ] = 100,
    opacity: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="Opacity of the shapes on the photos.")
    ] = 0.6,
    seed: Annotated[int, typer.Option(help="Seed of the shifted images.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the shifted sets and the result.")] = (
        DEFAULT_OUT
    ),
    workspace: Annotated[
        Path | None,
        typer.Option(help="Evidently workspace (default: reporting's, env REPORTING_WORKSPACE)."),
    ] = None,
    reference_yaml: Annotated[
        Path,
        typer.Option(help="Unshifted dataset whose test split both versions are also scored "
                     "on (skipped when missing)."),
    ] = paths.DATA_DIR / "shapes" / "data.yaml",
    reference_eval: Annotated[
        bool, typer.Option(help="Score both versions on --reference-yaml too.")
    ] = True,
    retrain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the retrain job.")
    ] = 3600.0,
    min_gain: Annotated[
        float, typer.Option(help="mAP50 gain the retrain must reach (exit 1 otherwise).")
    ] = 0.20,
) -> None:
    """Play the drift scenario against the running platform and print a before/after table."""
    started = time.monotonic()
    user, admin = resolve_keys(api_key, admin_key, env_file)
    n_after = after_images or max(20, images // 2)
    try:
        with connect(gateway_url, user, admin) as gateway:
            outcome = play(
                gateway, admin, images, n_after, test_images, opacity, seed, out, workspace,
                reference_yaml if reference_eval else None, retrain_timeout, min_images,
            )
    except ScenarioError as exc:
        console.print(f"[red]scenario stopped:[/red] {exc}")
        raise typer.Exit(2) from exc
    outcome.seconds = round(time.monotonic() - started, 1)
    result = out / "scenario_result.json"
    result.write_text(json.dumps(outcome.as_dict(min_gain), indent=2, default=str) + "\n")
    print_table(outcome, min_gain)
    console.print(f"results: {result}  ({outcome.seconds:.0f} s)")
    gain = outcome.gain
    if not outcome.drift_flagged_before or gain is None or gain < min_gain:
        raise typer.Exit(1)
