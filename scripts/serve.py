"""Run the local TorchServe for the yolo model: start (in the background), stop, status.

`start` serves the registry's default version (package one first: python -m scripts.package),
with its pid, config and logs under .run/torchserve/. Other versions are registered while it runs
through the management API (scripts.models, the retrain loop).

    python -m scripts.serve start
    python -m scripts.serve status
    python -m scripts.serve stop
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from devstack.torchserve import TorchServeError, TorchServeProcess
from yoloserve import paths
from yoloserve.modelserver.packaging import MODEL_NAME
from yoloserve.modelserver.registry import Registry

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

RUN_DIR = paths.RUN_DIR / "torchserve"
RunDir = Annotated[Path, typer.Option(help="Folder for config, logs, temp files and pid file.")]


@app.command()
def start(
    inference_port: Annotated[int, typer.Option(help="Inference API port.")] = 8085,
    management_port: Annotated[int, typer.Option(help="Management API port.")] = 8086,
    metrics_port: Annotated[int, typer.Option(help="Metrics API port.")] = 8087,
    version: Annotated[
        str | None, typer.Option(help="Version to serve; default: the registry's default.")
    ] = None,
    registry: Annotated[Path, typer.Option(help="Registry file.")] = paths.REGISTRY_FILE,
    store: Annotated[Path, typer.Option(help="TorchServe model store.")] = paths.STORE_DIR,
    run_dir: RunDir = RUN_DIR,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a READY worker.")] = 300.0,
) -> None:
    """Start TorchServe in the background and wait until the model has a READY worker."""
    running = TorchServeProcess.attach(run_dir)
    if running is not None and running.is_running():
        typer.echo(f"TorchServe already running (pid {running.pid}): {running.inference_url}")
        return
    data = Registry(registry).load()
    version = version or data.default_version
    if version is None:
        typer.echo("no model version in the registry: run `python -m scripts.package`", err=True)
        raise typer.Exit(1)
    mar = data.get(version).mar
    if not (store / mar).is_file():
        typer.echo(f"{store / mar} is missing: run `python -m scripts.package`", err=True)
        raise typer.Exit(1)
    ts = TorchServeProcess(
        run_dir, inference_port, management_port, metrics_port, store, {MODEL_NAME: mar}
    )
    ts.start()
    try:
        ts.wait_ready(timeout)
    except TorchServeError as exc:
        ts.stop()
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"TorchServe ready (pid {ts.pid}): {MODEL_NAME} v{version} at {ts.inference_url}, "
        f"management {ts.management_url}, metrics {ts.metrics_url}, logs {ts.log_dir}"
    )


@app.command()
def stop(run_dir: RunDir = RUN_DIR) -> None:
    """Stop the TorchServe that `start` launched (frontend and workers)."""
    ts = TorchServeProcess.attach(run_dir)
    if ts is None or not ts.is_running():
        typer.echo("TorchServe is not running")
        if ts is not None:
            ts.stop()  # clears the stale pid file
        return
    pid = ts.pid
    ts.stop()
    typer.echo(f"TorchServe stopped (pid {pid})")


@app.command()
def status(
    run_dir: RunDir = RUN_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether TorchServe runs, and the versions and workers of the model."""
    ts = TorchServeProcess.attach(run_dir)
    info: dict[str, object] = {"running": False}
    if ts is not None:
        info = ts.describe()
        try:
            resp = httpx.get(f"{ts.management_url}/models/{MODEL_NAME}/all", timeout=5.0)
            info["models"] = [
                {
                    "version": m.get("modelVersion"),
                    "workers": [w.get("status") for w in m.get("workers", [])],
                }
                for m in resp.json()
            ] if resp.status_code == 200 else []
        except httpx.HTTPError:
            info["models"] = []
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            typer.echo(f"{key}: {value}")
    if not info.get("running"):
        raise typer.Exit(3)  # like `systemctl status`: scripts can test for "not running"


if __name__ == "__main__":
    app()
