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

Budget modes (``--mode queue|random``, ``scripts/scenario/budget.py``): what a fixed labelling
budget buys. ``queue`` sends the ``--images`` pool through ``/predict`` and labels the review
queue's first ``--budget`` items; ``random`` labels ``--budget`` random pool images; both then
retrain once and score the candidate on the held-out set (``<out>/budget_<mode>_<n>.json``).
Compare modes on fresh platforms: ``--isolated`` starts one for the run.

    python -m scripts.scenario                 # full run (make scenario)
    python -m scripts.scenario --images 60     # a quick check
    python -m scripts.scenario --mode queue --budget 10 --images 60 --isolated
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway_client import GatewayClient
from scripts.scenario.budget import BudgetOutcome, Mode, play_budget
from scripts.scenario.errors import ScenarioError
from scripts.scenario.feedback import connect
from scripts.scenario.isolated import DEFAULT_REF_DATA, DEFAULT_REF_DIR, isolated_stack
from scripts.scenario.keys import DEMO_ENV, resolve_keys
from scripts.scenario.output import console
from scripts.scenario.play import play
from scripts.scenario.report import print_table
from yoloserve import paths
from yoloserve.modelserver.registry import Registry, open_registry

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
    mode: Annotated[
        str,
        typer.Option(help="loop: the feedback loop as above; queue / random: label --budget "
                     "images of the --images pool, chosen by the review queue or at random, "
                     "then retrain once."),
    ] = "loop",
    budget: Annotated[
        int, typer.Option(min=1, help="queue / random: images labelled.")
    ] = 10,
    isolated: Annotated[
        bool, typer.Option(help="queue / random: run on a fresh isolated TorchServe + gateway "
                           "(devstack) instead of --gateway-url.")
    ] = False,
    ref_data: Annotated[
        Path, typer.Option(help="--isolated: ref_data.csv of the review strategies.")
    ] = DEFAULT_REF_DATA,
    ref_dir: Annotated[
        Path, typer.Option(help="--isolated: reference dataset of the retrain job.")
    ] = DEFAULT_REF_DIR,
) -> None:
    """Play the drift scenario against the running platform and print a before/after table."""
    started = time.monotonic()
    if mode not in ("loop", "queue", "random"):
        raise typer.BadParameter(f"{mode!r}: choose loop, queue or random", param_hint="--mode")
    if mode != "loop":
        _budget_run(mode, budget, images, test_images, opacity, seed, out, retrain_timeout,
                    gateway_url, api_key, admin_key, env_file, isolated, ref_data, ref_dir)
        return
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


def _budget_run(
    mode: str, budget: int, pool: int, n_test: int, opacity: float, seed: int, out: Path,
    retrain_timeout: float, gateway_url: str, api_key: str | None, admin_key: str | None,
    env_file: Path, isolated: bool, ref_data: Path, ref_dir: Path,
) -> None:
    """One budget run (``--mode queue|random``), on the given gateway or a fresh stack."""
    started = time.monotonic()
    chosen: Mode = "queue" if mode == "queue" else "random"

    def run(gateway: GatewayClient, admin: str | None, registry: Registry, store: Path) -> (
        BudgetOutcome
    ):
        return play_budget(
            gateway, admin, chosen, pool=pool, budget=budget, n_test=n_test, opacity=opacity,
            seed=seed, out=out, retrain_timeout=retrain_timeout, registry=registry,
            store_dir=store,
        )

    try:
        if isolated:
            with isolated_stack(ref_data, ref_dir, pool) as stack:
                with connect(stack.gateway_url, stack.user_key, stack.admin_key) as gateway:
                    outcome = run(gateway, stack.admin_key, stack.registry, stack.store_dir)
        else:
            user, admin = resolve_keys(api_key, admin_key, env_file)
            with connect(gateway_url, user, admin) as gateway:
                outcome = run(gateway, admin, open_registry(), paths.STORE_DIR)
    except ScenarioError as exc:
        console.print(f"[red]scenario stopped:[/red] {exc}")
        raise typer.Exit(2) from exc
    outcome.seconds = round(time.monotonic() - started, 1)
    _print_budget(outcome, out / f"budget_{mode}_{budget}.json")


def _print_budget(outcome: BudgetOutcome, result: Path) -> None:
    result.write_text(json.dumps(outcome.as_dict(), indent=2, default=str) + "\n")
    gain = outcome.gain
    console.print(
        f"{outcome.mode}: {outcome.labelled} of {outcome.pool} images labelled "
        f"({outcome.reasons}), retrain {outcome.job_state}; mAP50 on the shifted test set "
        f"{outcome.map50_old:.3f} -> "
        f"{'n/a' if outcome.map50_new is None else f'{outcome.map50_new:.3f}'} "
        f"(gain {'n/a' if gain is None else f'{gain:+.3f}'})"
    )
    for note in outcome.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"results: {result}  ({outcome.seconds:.0f} s)")
