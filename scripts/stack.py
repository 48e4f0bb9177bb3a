"""The local platform, as `make demo` / `make stop` / `make status` run it: TorchServe, the gateway,
the retrain trainer, the web app, the Evidently UI, the reporting watcher and Prometheus,
supervised by supervisord (logs under .run/supervisor/logs/), which restarts any of them that
crashes. The gateway only queues retrain jobs (RETRAIN_LAUNCHER=queue); the trainer runs them.

`up` prepares what is missing first (the shipped weights packaged as a `.mar` version, the
reference embeddings `data/ref_data.csv`, API keys in `.run/demo.env`), hands the services to
supervisord (a running one is kept as it is), waits until each answers, and prints the URLs.
Running it twice is safe.

    python -m scripts.stack up
    python -m scripts.stack status
    python -m scripts.stack down
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Annotated

import typer

from devstack import mlflow as mlflow_server
from devstack.ports import port_taken
from devstack.prometheus import prometheus_program
from devstack.supervisor import Program, Supervisor
from devstack.torchserve import TorchServeProcess
from devstack.waiting import NotReady, url_ready
from scripts.bootstrap import ensure_model, ensure_reference_data
from scripts.demo_env import DEMO_ENV, read_env_file
from yoloserve import paths
from yoloserve.modelserver.registry import open_registry
from yoloserve.tracking import mirror
from yoloserve.tracking.settings import TrackingSettings

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

TS_RUN_DIR = paths.RUN_DIR / "torchserve"
SUPERVISOR_DIR = paths.RUN_DIR / "supervisor"
PROMETHEUS_RUN_DIR = paths.RUN_DIR / "prometheus"
MLFLOW_RUN_DIR = paths.RUN_DIR / "mlflow"


@dataclass(frozen=True)
class Ports:
    """Where each service listens (the contract's defaults)."""

    gateway: int = 8080
    webapp: int = 8081
    evidently: int = 8082
    inference: int = 8085
    management: int = 8086
    metrics: int = 8087
    prometheus: int = 9090
    mlflow: int = 8083


def busy_ports(ports: Ports) -> list[str]:
    """``name port`` of each of the demo's ports that something else listens on already."""
    return [f"{name} {port}" for name, port in vars(ports).items() if port_taken(port)]


def _say(message: str) -> None:
    typer.echo(f"[demo] {message}")


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


KEY_NAMES = ("GATEWAY_API_KEYS", "GATEWAY_ADMIN_API_KEYS")


def load_keys() -> dict[str, str]:
    """The demo's API keys: read from .run/demo.env, created (random, mode 0600) the first time."""
    # Only the gateway's keys: the file also keeps other secrets (Grafana's, for `make up`).
    keys = {k: v for k, v in read_env_file(DEMO_ENV).items() if k in KEY_NAMES}
    if not keys.get("GATEWAY_API_KEYS") or not keys.get("GATEWAY_ADMIN_API_KEYS"):
        keys = {
            "GATEWAY_API_KEYS": "user-" + secrets.token_urlsafe(12),
            "GATEWAY_ADMIN_API_KEYS": "admin-" + secrets.token_urlsafe(12),
        }
        DEMO_ENV.parent.mkdir(parents=True, exist_ok=True)
        DEMO_ENV.write_text(
            "# API keys of the local demo (make demo); send one as the X-API-Key header.\n"
            + "".join(f"{k}={v}\n" for k, v in keys.items())
        )
        DEMO_ENV.chmod(0o600)
    return keys


def torchserve(ports: Ports) -> TorchServeProcess:
    """The demo's TorchServe (its run folder and ports)."""
    return TorchServeProcess(TS_RUN_DIR, ports.inference, ports.management, ports.metrics)


def programs(ports: Ports, keys: dict[str, str]) -> list[Program]:
    """The demo's services, in start order (each waits for the one before it)."""
    ts = torchserve(ports)
    gateway_url = f"http://127.0.0.1:{ports.gateway}"
    evidently_url = f"http://127.0.0.1:{ports.evidently}"
    mlflow_url = f"http://127.0.0.1:{ports.mlflow}"
    base_env = {"YOLO_OFFLINE": "1", "DO_NOT_TRACK": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    # The gateway queues jobs and the trainer runs them with its own settings: both get these
    # (the gateway predicts through the same TorchServe the trainer swaps versions in).
    shared_env = {
        "RETRAIN_LAUNCHER": "queue",
        "TORCHSERVE_INFERENCE_URL": ts.inference_url,
        "TORCHSERVE_MANAGEMENT_URL": ts.management_url,
    }
    gateway_env = {
        **base_env,
        **keys,
        **shared_env,
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_MLFLOW_UI_URL": mlflow_url,  # /models links runs; the gateway has no mlflow
    }
    webapp_env = {
        **base_env,
        "WEBAPP_PORT": str(ports.webapp),
        "WEBAPP_GATEWAY_URL": gateway_url,
        # The web app offers "retrain now" too, which is an admin route.
        "WEBAPP_API_KEY": keys["GATEWAY_ADMIN_API_KEYS"].split(",")[0],
        "WEBAPP_EVIDENTLY_URL": evidently_url,
    }
    return [
        # First, so its slow first start (schema creation) overlaps the others'; waited for last.
        mlflow_server.program(MLFLOW_RUN_DIR, ports.mlflow),
        ts.program(),
        Program("gateway", _python_module("gateway"), gateway_env,
                ready=url_ready(f"{gateway_url}/ready")),
        # The controller: ready once started (no port; its heartbeat is in .run/trainers/ while
        # it acts). Every retrain is an MLflow run, and it mirrors the registry into MLflow.
        Program("controller", _python_module("yoloserve.controller", "run"),
                {**base_env, **shared_env, "MLFLOW_TRACKING_URI": mlflow_url,
                 "CONTROLLER_LEASE_BACKEND": "store"}),
        Program("evidently", _python_module("reporting", "ui"),
                {**base_env, "REPORTING_UI_PORT": str(ports.evidently)},
                ready=url_ready(f"{evidently_url}/api/projects")),
        Program("watcher", _python_module("reporting", "watch"), base_env),
        Program("webapp", _python_module("webapp"), webapp_env,
                ready=url_ready(f"http://127.0.0.1:{ports.webapp}/_stcore/health")),
        # Debian's Prometheus with the compose stack's rules and scrape jobs, on local ports.
        prometheus_program(PROMETHEUS_RUN_DIR, ports.prometheus, gateway_url, ts.metrics_url),
    ]


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 300.0,
) -> None:
    """Start every service under supervisord, wait until each answers, print the URLs."""
    ports = Ports()
    keys = load_keys()
    ensure_reference_data()  # first: auto calibrates INT8 on its training images
    version = ensure_model(open_registry())
    supervisor = Supervisor(SUPERVISOR_DIR)
    if not supervisor.is_running():  # a running demo holds its own ports: apply() updates it
        taken = busy_ports(ports)
        if taken:
            typer.echo(f"these ports are taken by another process: {', '.join(taken)}; stop it "
                       "(`make down` stops the compose stack, which publishes 8080-8082 too)",
                       err=True)
            raise typer.Exit(1)
    MLFLOW_RUN_DIR.mkdir(parents=True, exist_ok=True)  # SQLite does not create its folder
    services = programs(ports, keys)
    _say("starting services under supervisord ...")
    supervisor.apply(services)
    # MLflow last: nothing else waits on it, and its first start is the slowest.
    ordered = [p for p in services if p.name != "mlflow"] + [p for p in services
                                                              if p.name == "mlflow"]
    for program in ordered:
        try:
            seconds = supervisor.wait_ready(program.name, timeout)
        except NotReady as exc:
            if program.name == "mlflow":  # tracking is optional: serving goes on without it
                typer.echo(f"MLflow is not up yet ({exc}); runs are tracked once it is", err=True)
                continue
            typer.echo(str(exc), err=True)
            typer.echo(f"{program.name} did not come up; `make stop` stops the rest", err=True)
            raise typer.Exit(1) from exc
        _say(f"{program.name} up (pid {supervisor.pid(program.name)}, {seconds:.0f} s)")
    mlflow_url = f"http://127.0.0.1:{ports.mlflow}"
    # The shipped model's training as a run, version 1 and `champion` (the trainer keeps it so).
    report = mirror.sync_quietly(open_registry(), TrackingSettings(tracking_uri=mlflow_url))
    mirrored = (f"model `yolo`, champion v{report.champion}" if report
                else "sync failed, see make mlflow-sync")
    gateway_url = f"http://127.0.0.1:{ports.gateway}"
    ts = torchserve(ports)
    user_key = keys["GATEWAY_API_KEYS"].split(",")[0]
    typer.echo(
        "\n".join(
            [
                "",
                "yoloserve is up:",
                f"  gateway      {gateway_url}/docs   (API; model v{version})",
                f"  web app      http://127.0.0.1:{ports.webapp}",
                f"  Evidently UI http://127.0.0.1:{ports.evidently}",
                f"  Prometheus   http://127.0.0.1:{ports.prometheus}   (alerts: /alerts)",
                f"  MLflow UI    {mlflow_url}   (runs, {mirrored})",
                f"  TorchServe   {ts.inference_url} / {ts.management_url} / {ts.metrics_url}"
                "  (internal)",
                "",
                f"  API keys (X-API-Key) in {DEMO_ENV.relative_to(paths.ROOT)}: user {user_key}",
                f"  try: curl -F file=@data/samples/shapes_1.jpg {gateway_url}/predict",
                f"  logs: {supervisor.log_dir.relative_to(paths.ROOT)}/<service>.log   "
                "status: make status   stop: make stop",
                "  a service that crashes is restarted by supervisord",
            ]
        )
    )


@app.command()
def down() -> None:
    """Stop every service (each with its process group), then supervisord."""
    if Supervisor(SUPERVISOR_DIR).shutdown():
        _say("all services stopped")
    else:
        _say("nothing was running")


@app.command()
def status() -> None:
    """One line per service: state, pid, uptime, log; exit 3 when nothing runs."""
    supervisor = Supervisor(SUPERVISOR_DIR)
    infos = supervisor.all_info()
    if not infos:
        typer.echo("supervisord is not running (make demo starts it)")
        raise typer.Exit(3)  # like `systemctl status`: scripts can test for "not running"
    now = time.time()
    for info in infos:
        up_s = now - info["start"] if info["statename"] == "RUNNING" else 0
        typer.echo(f"{info['name']:<11} {info['statename']:<8} pid {info['pid']:<7} "
                   f"up {up_s:>6.0f} s  log {info['stdout_logfile']}")
    ts = TorchServeProcess.from_run_dir(TS_RUN_DIR)
    typer.echo(f"served versions: {ts.served_versions()}")
    if not os.environ.get("CI"):
        typer.echo(f"keys: {DEMO_ENV}")


if __name__ == "__main__":
    app()
