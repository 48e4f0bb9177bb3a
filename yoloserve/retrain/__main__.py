"""Retrain jobs: fine-tune the serving model on feedback, gate it, hot-swap it if it holds up.

Settings come from RETRAIN_* environment variables (yoloserve.retrain.settings.RetrainSettings:
epochs, tolerance, timeout_s, ...; TorchServe from TORCHSERVE_*, the store from STORE_*); the
options below override a few of them.

    python -m yoloserve.retrain start            # detached job, prints its id (one at a time)
    python -m yoloserve.retrain status [r-0001]  # one job as JSON, or every job
    python -m yoloserve.retrain status -f [ID]   # a progress bar until the job (newest) ends
    python -m yoloserve.retrain run              # run a job here, in the foreground
    python -m yoloserve.retrain run --job-id ID  # what `start` (and the gateway) spawn
    python -m yoloserve.retrain trainer          # the trainer service: runs queued jobs
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from yoloserve.errors import KubernetesError, RetrainAlreadyRunning, UnknownJob
from yoloserve.modelserver.registry import Registry, RetrainJob
from yoloserve.retrain.heartbeat import heartbeat_dir, is_fresh, read_heartbeats
from yoloserve.retrain.jobs import (
    reap_stale_jobs,
    run_foreground,
    run_job_process,
    start_job_process,
)
from yoloserve.retrain.launchers.factory import launcher_from_settings
from yoloserve.retrain.launchers.kubernetes import job_name
from yoloserve.retrain.progress import progress_label
from yoloserve.retrain.settings import RetrainSettings, job_log
from yoloserve.retrain.trainer import Trainer
from yoloserve.store.engine import open_store

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

Epochs = Annotated[int | None, typer.Option(help="Fine-tuning epochs (RETRAIN_EPOCHS).")]
Deploy = Annotated[
    bool | None,
    typer.Option("--deploy/--no-deploy", help="Hot-swap a promoted candidate (RETRAIN_DEPLOY)."),
]


def _settings(epochs: int | None = None, deploy: bool | None = None) -> RetrainSettings:
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if deploy is not None:
        changes["deploy"] = deploy
    # Validated again, so an override is checked like an environment value.
    return RetrainSettings(**{**RetrainSettings().model_dump(), **changes})


def _stop_on_sigterm() -> None:
    # `kill <pid>` ends the job through SystemExit, so it is recorded as failed, not left running.
    def handler(signum: int, frame: FrameType | None) -> NoReturn:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _show(job: RetrainJob) -> None:
    typer.echo(job.model_dump_json(indent=2))


def _log_to_stdout() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def run(
    job_id: Annotated[
        str | None,
        typer.Option(help="A queued job to run (as `start` spawns it); none: record a new one."),
    ] = None,
    epochs: Epochs = None,
    deploy: Deploy = None,
) -> None:
    """Run one job to its end in this process; exit 1 if it failed."""
    _log_to_stdout()
    _stop_on_sigterm()
    settings = _settings(epochs, deploy)
    try:
        if job_id is None:
            job = run_foreground(settings, trigger="cli")
        else:
            job = run_job_process(job_id, settings)
    except (RetrainAlreadyRunning, UnknownJob) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    _show(job)
    if job.state == "failed":
        raise typer.Exit(1)


@app.command()
def start(epochs: Epochs = None, deploy: Deploy = None) -> None:
    """Start a detached job and print its id; exit 2 if one is already running."""
    settings = _settings(epochs, deploy)
    try:
        job_id = start_job_process(settings, trigger="cli")
    except RetrainAlreadyRunning as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except KubernetesError as exc:
        typer.echo(f"the trainer Job could not be started: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(job_id)
    if settings.launcher == "kubernetes":
        typer.echo(f"log: kubectl logs job/{job_name(job_id)}", err=True)
    elif settings.launcher == "queue":
        typer.echo(f"queued for the trainer service; log: {job_log(settings, job_id)}", err=True)
    else:
        typer.echo(f"log: {job_log(settings, job_id)}", err=True)


@app.command()
def trainer(
    trainer_id: Annotated[
        str | None, typer.Option(help="Name of its heartbeat file; none: a random one.")
    ] = None,
) -> None:
    """The trainer service: claim queued jobs and run them, one at a time, until SIGTERM.

    Pair it with RETRAIN_LAUNCHER=queue on the gateway; it needs the same registry, store and run
    dir (STORE_DATABASE_URL, RETRAIN_STORE_DIR, RETRAIN_RUN_DIR or the YOLOSERVE_* paths).
    Jobs run with this process's RETRAIN_* settings.
    """
    _log_to_stdout()
    _stop_on_sigterm()
    service = Trainer(RetrainSettings(), trainer_id=trainer_id)
    try:
        service.run_forever()
    except SystemExit as exc:
        # SIGTERM: a job being run is already recorded failed, the heartbeat file removed.
        logging.getLogger("yoloserve.retrain.trainer").info(
            "trainer %s stopped by signal (%s)", service.trainer_id, exc.code)


@app.command("trainer-health")
def trainer_health() -> None:
    """Exit 0 while a trainer on this host beats (the trainer image's healthcheck), else 1."""
    settings = RetrainSettings()
    host = socket.gethostname()
    fresh = [b for b in read_heartbeats(settings) if b.hostname == host and is_fresh(b, settings)]
    if not fresh:
        typer.echo(f"no fresh trainer heartbeat from {host} in {heartbeat_dir(settings)}",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"{fresh[0].trainer_id} beat {fresh[0].age_s():.0f} s ago "
               f"(job {fresh[0].job_id or 'none'})")


@app.command()
def status(
    job_id: Annotated[
        str | None, typer.Argument(help="A job id; none: every job (with --follow: the newest).")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Draw a progress bar (phase, epoch i of N, ETA) "
                     "until the job ends, then print it; exit 1 if it failed."),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between two reads of the job (--follow).")
    ] = 2.0,
) -> None:
    """Show a job (JSON) or every job (one line each); stale jobs are marked failed first."""
    settings = RetrainSettings()
    registry = Registry(open_store(settings.store.url))
    launcher = launcher_from_settings(settings)
    reap_stale_jobs(registry, launcher=launcher)
    jobs = registry.jobs(kind="retrain")
    if follow:
        from yoloserve.retrain.follow import follow_job  # rich only where a bar is drawn

        job_id = job_id or (max(j.job_id for j in jobs) if jobs else None)
        if job_id is None:
            typer.echo("no retrain jobs yet", err=True)
            raise typer.Exit(2)
        try:
            job = follow_job(registry, job_id, interval_s=interval, launcher=launcher)
        except UnknownJob as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        _show(job)
        if job.state == "failed":
            raise typer.Exit(1)
        return
    if job_id is not None:
        try:
            _show(registry.get_job(job_id))
        except UnknownJob as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        return
    if not jobs:
        typer.echo("no retrain jobs yet")
    for job in jobs:
        line = {"job_id": job.job_id, "state": job.state, "candidate": job.candidate_version,
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "reason": job.reason,
                "progress": progress_label(job.progress) if job.progress else None}
        typer.echo(json.dumps(line))


if __name__ == "__main__":
    app()
