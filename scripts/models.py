"""Model versions on a running TorchServe, without a restart: redeploy, activate (rollback), list.

redeploy (make redeploy WEIGHTS=...): python -m scripts.models redeploy --weights PATH

activate (make rollback VERSION=n): python -m scripts.models activate 1

`list` asks TorchServe at --management-url (or TORCHSERVE_MANAGEMENT_URL, read as every service
reads it: yoloserve.modelserver.settings), 127.0.0.1:8086 by default: the local `make demo` stack.
With DEPLOY_BACKEND=kserve, redeploy rolls the version out as a KServe canary and activate
serves it at once (yoloserve.modelserver.rollout.kserve).

mlflow-sync (make mlflow-sync): make MLflow's registered model `yolo` agree with the registry
(versions, tags, the `champion` alias), e.g. after an MLflow outage. With MLFLOW_TRACKING_URI
set, redeploy and activate sync after the swap too (never before it, never blocking it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from scripts.package import dataset_of, reference_images
from yoloserve import paths
from yoloserve.errors import YoloServeError
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.export import AUTO_RUNTIME, RUNTIMES, is_int8
from yoloserve.modelserver.packaging import package
from yoloserve.modelserver.registry import Registry, open_registry
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.store.engine import open_store
from yoloserve.tracking import mirror
from yoloserve.tracking.settings import TrackingSettings

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

ManagementUrl = Annotated[
    str | None,
    typer.Option(help="TorchServe management API; unset: TORCHSERVE_MANAGEMENT_URL, else :8086."),
]
DatabaseUrl = Annotated[
    str, typer.Option(envvar="STORE_DATABASE_URL", help="The store (empty: the SQLite default).")
]
WaitS = Annotated[
    float, typer.Option(help="Seconds to wait for the controller to carry the activation out.")
]


def _registry(database_url: str) -> Registry:
    return open_registry(open_store(database_url or None))


def _serve(registry: Registry, version: str, wait_s: float) -> None:
    """Record the activation intent and follow it to its end (the controller carries it out)."""
    try:
        job = registry.request_activation(version)
    except YoloServeError as exc:  # UnknownVersion, VersionRejected
        typer.echo(f"version {version} cannot serve ({exc.code}): {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"activation {job.job_id} of version {version} queued for the controller")
    done = registry.wait_job(job.job_id, wait_s)
    if done.state == "queued":
        typer.echo(f"activation {job.job_id} is still queued after {wait_s:.0f} s: is a "
                   "controller running (make demo / make status)? It runs when one acts.", err=True)
        raise typer.Exit(1)
    if done.state != "succeeded":
        typer.echo(f"activation {job.job_id} {done.state}: {done.reason}", err=True)
        default = registry.load().default_version
        typer.echo(f"version {default} keeps serving", err=True)
        raise typer.Exit(1)


@app.command()
def redeploy(
    weights: Annotated[Path, typer.Option(help="Ultralytics .pt weights to serve.")] = (
        paths.DEFAULT_WEIGHTS
    ),
    parent: Annotated[str | None, typer.Option(help="Version these were tuned from.")] = None,
    database_url: DatabaseUrl = "",
    store: Annotated[Path, typer.Option(help="TorchServe model store.")] = paths.STORE_DIR,
    wait_s: WaitS = 300.0,
    runtime: Annotated[
        str, typer.Option(help=f"What the handler runs: {', '.join(RUNTIMES)}, or auto (the "
                          "fastest that passes its gate on this machine).")
    ] = AUTO_RUNTIME,
    replace_classes: Annotated[bool, typer.Option(
        help="Serve weights of other classes than the registry's (your model replacing the "
        "shipped one); versions of the old classes can no longer serve.")] = False,
) -> None:
    """Package WEIGHTS (or reuse their version) and make it the serving default, no restart."""
    if not weights.is_file():
        typer.echo(f"{weights} does not exist", err=True)
        raise typer.Exit(2)
    registry = _registry(database_url)
    calibration, accuracy_set = None, None
    if is_int8(runtime) or runtime == AUTO_RUNTIME:  # calibrated and gated, as make package does
        calibration, accuracy_set = reference_images(dataset_of(weights), 200, 150)
    try:
        record = package(weights, registry, parent=parent, store_dir=store, runtime=runtime,
                         calibration=calibration, accuracy_set=accuracy_set,
                         replace_classes=replace_classes)
    except YoloServeError as exc:  # PackagingError and ParityError included
        typer.echo(f"packaging failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"version {record.version}: {store / record.mar} ({record.runtime})")
    _serve(registry, record.version, wait_s)
    typer.echo(f"version {record.version} serves now")


@app.command()
def activate(
    version: Annotated[str, typer.Argument(help="A registry version to serve again.")],
    database_url: DatabaseUrl = "",
    wait_s: WaitS = 300.0,
) -> None:
    """Make VERSION the serving default again (rollback); rejected versions are refused."""
    _serve(_registry(database_url), version, wait_s)
    typer.echo(f"version {version} serves now")


async def _loaded_versions(torchserve: TorchServeSettings) -> list[str] | None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        client = TorchServeClient(http, torchserve.inference_url, torchserve.management_url,
                                  torchserve.model_name)
        try:
            described = await client.describe_model(torchserve.model_name, "all")
        except YoloServeError:
            return None
    return [str(m.get("modelVersion")) for m in described]


@app.command("list")
def list_versions(
    database_url: DatabaseUrl = "",
    management_url: ManagementUrl = None,
) -> None:
    """Every registry version (one JSON line each) and what TorchServe has loaded."""
    data = _registry(database_url).load()
    for v in data.versions:
        typer.echo(json.dumps({
            "version": v.version, "status": v.status, "parent": v.parent, "mar": v.mar,
            "map50": v.metrics.get("map50"), "created_at": v.created_at.isoformat(),
        }))
    torchserve = TorchServeSettings()
    if management_url:
        torchserve = torchserve.model_copy(update={"management_url": management_url})
    loaded = asyncio.run(_loaded_versions(torchserve))
    where = f"TorchServe at {torchserve.management_url}"
    typer.echo(f"{where}: " + (f"loaded {loaded}" if loaded is not None else "not reachable"))
    typer.echo(f"registry default: {data.default_version}")


@app.command("mlflow-sync")
def mlflow_sync(database_url: DatabaseUrl = "") -> None:
    """Mirror the registry into MLflow (MLFLOW_TRACKING_URI): versions, tags, `champion`."""
    settings = TrackingSettings()
    if not settings.enabled:
        typer.echo("MLFLOW_TRACKING_URI is not set: nothing to sync", err=True)
        raise typer.Exit(2)
    try:
        report = mirror.sync(_registry(database_url), settings)
    except Exception as exc:
        typer.echo(f"MLflow sync failed ({type(exc).__name__}): {exc}", err=True)
        raise typer.Exit(1) from exc
    from yoloserve.tracking import status

    status.record_sync(paths.RUN_DIR)
    typer.echo(f"MLflow at {settings.tracking_uri}: created versions {report.created or 'none'}, "
               f"runs logged for {report.runs_logged or 'none'}, "
               f"{settings.champion_alias} -> v{report.champion}")
    if report.mismatched:
        typer.echo(f"versions {report.mismatched} do not line up with MLflow's", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
