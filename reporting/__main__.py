"""Drift and quality monitoring of the detection service with Evidently.

    python -m reporting bootstrap    # project, dashboard and the reference-only run (idempotent)
    python -m reporting run-once     # one run from data/ref_data.csv + data/prod_data.csv now
    python -m reporting watch        # a run every --interval s and every --every-rows new rows
    python -m reporting ui           # bootstrap, then the Evidently UI, http://127.0.0.1:8082
    python -m reporting latest       # headline values of the latest stored run (--json)

Every option defaults to a REPORTING_* environment variable (see reporting/config.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from reporting.config import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Drift and quality monitoring with Evidently. Every option defaults to a REPORTING_* "
    "environment variable (reporting/config.py).",
)

WorkspaceOpt = Annotated[
    Path | None, typer.Option(help="Evidently workspace folder (env REPORTING_WORKSPACE).")
]
RefOpt = Annotated[Path | None, typer.Option(help="Reference CSV (env REPORTING_REF_CSV).")]
ProdOpt = Annotated[Path | None, typer.Option(help="Production CSV (env REPORTING_PROD_CSV).")]
WindowOpt = Annotated[
    int | None,
    typer.Option(help="Latest prod rows per run, 0 = all (env REPORTING_WINDOW_ROWS, 500)."),
]


def _settings(**overrides: Any) -> Settings:
    # Built anew rather than copied from get_settings(): defaults derived from the workspace
    # (the HTML folder) must follow a --workspace given here.
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _log(message: str) -> None:
    typer.echo(f"{datetime.now():%H:%M:%S} {message}")


@app.command("bootstrap")
def bootstrap_cmd(workspace: WorkspaceOpt = None, ref: RefOpt = None) -> None:
    """Create the project, its dashboard and the reference-only run; nothing when they exist.

    `watch` does this first; run it by hand to get the dashboard without a watcher.
    """
    settings = _settings(workspace=workspace, ref_csv=ref)
    from reporting.service import bootstrap

    try:
        _log(bootstrap(settings).message)
    except (FileNotFoundError, ValueError) as exc:
        _log(f"error: {exc}")
        raise typer.Exit(1) from exc


@app.command("run-once")
def run_once_cmd(
    workspace: WorkspaceOpt = None,
    ref: RefOpt = None,
    prod: ProdOpt = None,
    window_rows: WindowOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the run's values, read back from the workspace, as one JSON object "
            '{"run_id": ..., "values": {...}} on stdout (for scripts).',
        ),
    ] = False,
) -> None:
    """Build a run (drift + classification) from the CSVs now and add it to the workspace."""
    settings = _settings(workspace=workspace, ref_csv=ref, prod_csv=prod, window_rows=window_rows)
    from reporting.service import latest_values, run_once  # `import evidently` takes 6-9 s

    try:
        outcome = run_once(settings)
    except (FileNotFoundError, ValueError) as exc:
        _log(f"error: {exc}")
        raise typer.Exit(1) from exc
    log = (lambda m: typer.echo(m, err=True)) if as_json else _log
    log(outcome.message)
    for path in outcome.html:
        log(f"html: {path}")
    if as_json:
        if outcome.run is None or not outcome.html:
            raise typer.Exit(1)
        # By run id: a `watch` may add its own run in the same second.
        values = latest_values(settings, outcome.run.run_id)
        typer.echo(json.dumps({"run_id": outcome.run.run_id, "values": values}, sort_keys=True))


@app.command("watch")
def watch_cmd(
    workspace: WorkspaceOpt = None,
    ref: RefOpt = None,
    prod: ProdOpt = None,
    window_rows: WindowOpt = None,
    every_rows: Annotated[
        int | None,
        typer.Option(
            "--every-rows", "-k", help="Run each k new prod rows (env REPORTING_EVERY_ROWS, 50)."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Run at least every N seconds (env REPORTING_INTERVAL_S, 300)."),
    ] = None,
    poll: Annotated[
        float | None, typer.Option(help="Seconds between row counts (env REPORTING_POLL_S, 2).")
    ] = None,
) -> None:
    """Add a run now, every --interval seconds, and whenever prod crosses a multiple of k rows.

    First makes sure the project, its dashboard and the reference-only run exist (as
    `bootstrap`), so the UI shows them before any feedback.
    """
    settings = _settings(
        workspace=workspace, ref_csv=ref, prod_csv=prod, window_rows=window_rows,
        every_rows=every_rows, interval_s=interval, poll_s=poll,
    )
    from reporting.service import bootstrap, run_once
    from reporting.watch import watch_loop
    from yoloserve.feedback.store import count_rows

    bootstrapped = False

    def run(reason: str) -> None:
        nonlocal bootstrapped
        # Before the first run (and again at each run until it succeeds, e.g. while the
        # reference CSV is still being built): the dashboard must not wait for feedback.
        if not bootstrapped:
            try:
                _log(f"[{reason}] {bootstrap(settings).message}")
                bootstrapped = True
            except Exception as exc:  # noqa: BLE001 - logged; retried at the next run
                _log(f"[{reason}] bootstrap failed: {type(exc).__name__}: {exc}")
        try:
            _log(f"[{reason}] {run_once(settings).message}")
        except Exception as exc:  # noqa: BLE001 - a daemon logs a failed run and waits for the next
            _log(f"[{reason}] run failed: {type(exc).__name__}: {exc}")

    _log(
        f"watching {settings.prod_csv}: every {settings.every_rows} rows, "
        f"every {settings.interval_s:g} s; workspace {settings.workspace}"
    )
    try:
        watch_loop(
            count=lambda: count_rows(settings.prod_csv), run=run,
            every_rows=settings.every_rows, interval_s=settings.interval_s,
            poll_s=settings.poll_s,
        )
    except KeyboardInterrupt:
        _log("stopped")


@app.command("latest")
def latest_cmd(
    workspace: WorkspaceOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout (for scripts).")
    ] = False,
) -> None:
    """Print the headline values of the latest run stored in the workspace.

    Read back from the workspace (not recomputed), so it shows what the dashboard shows:
    drift share, embedding drift, F1 / precision / recall, balanced accuracy, per-class scores.
    """
    settings = _settings(workspace=workspace)
    from reporting.service import latest_values

    values = latest_values(settings)
    if as_json:
        typer.echo(json.dumps(values, sort_keys=True))
    elif not values:
        _log(f"no run stored in '{settings.project_name}' at {settings.workspace}")
    else:
        for key in sorted(values):
            typer.echo(f"{key:<28} {values[key]:.4f}")
    if not values:
        raise typer.Exit(1)


@app.command("ui")
def ui_cmd(
    workspace: WorkspaceOpt = None,
    ref: RefOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind host (env REPORTING_UI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env REPORTING_UI_PORT, 8082).")] = None,
    with_bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap/--no-bootstrap",
            help="First create the project, its dashboard and the reference-only run (as "
            "`bootstrap`), so the UI lists them from its first answer.",
        ),
    ] = True,
) -> None:
    """Run `evidently ui` on the workspace (DO_NOT_TRACK=1) in this process; Ctrl-C stops it."""
    from reporting.ui import exec_ui

    settings = _settings(workspace=workspace, ref_csv=ref, ui_host=host, ui_port=port)
    if with_bootstrap:
        from reporting.service import bootstrap

        try:
            _log(bootstrap(settings).message)
        except (FileNotFoundError, ValueError) as exc:
            # The UI comes up anyway; the watcher retries the bootstrap at each of its runs.
            _log(f"bootstrap skipped: {exc}")
    _log(f"Evidently UI on {settings.ui_url} (workspace {settings.workspace})")
    exec_ui(settings)


if __name__ == "__main__":
    app()
