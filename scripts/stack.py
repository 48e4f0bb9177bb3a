"""The local platform, as `make demo` / `make stop` / `make status` run it: TorchServe, the gateway,
the web app, the Evidently UI and the reporting watcher, as background processes with pid files
and logs under .run/.

`up` prepares what is missing first (the shipped weights packaged as a `.mar` version, the
reference embeddings `data/ref_data.csv`, API keys in `.run/demo.env`), starts whatever is not
running yet, waits until each service answers, and prints the URLs. Running it twice is safe.

    python -m scripts.stack up
    python -m scripts.stack status
    python -m scripts.stack down
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from devstack.procs import Service, wait_http
from devstack.torchserve import TorchServeProcess
from yoloserve import paths
from yoloserve.modelserver.packaging import MODEL_NAME, package
from yoloserve.modelserver.registry import Registry

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

DEMO_ENV = paths.RUN_DIR / "demo.env"
TS_RUN_DIR = paths.RUN_DIR / "torchserve"


@dataclass(frozen=True)
class Ports:
    """Where each service listens (the contract's defaults)."""

    gateway: int = 8080
    webapp: int = 8081
    evidently: int = 8082
    inference: int = 8085
    management: int = 8086
    metrics: int = 8087


def _say(message: str) -> None:
    typer.echo(f"[demo] {message}")


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def load_keys() -> dict[str, str]:
    """The demo's API keys: read from .run/demo.env, created (random, mode 0600) the first time."""
    keys: dict[str, str] = {}
    if DEMO_ENV.is_file():
        for line in DEMO_ENV.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                keys[name.strip()] = value.strip()
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


def ensure_model(registry: Registry) -> str:
    """The registry's default version, packaging the shipped weights first if there is none."""
    data = registry.load()
    version = data.default_version
    if version is not None and (paths.STORE_DIR / data.get(version).mar).is_file():
        return version
    _say(f"packaging {paths.DEFAULT_WEIGHTS} as a TorchServe .mar ...")
    # package() records the metrics.json that ships beside the weights.
    record = package(paths.DEFAULT_WEIGHTS, registry, make_default=True)
    return record.version


def ensure_reference_data() -> None:
    """data/ref_data.csv from the training set's ground truth (dataset generated if missing)."""
    if (paths.DATA_DIR / "ref_data.csv").is_file():
        return
    if not (paths.DATA_DIR / "shapes" / "data.yaml").is_file():
        _say("generating the synthetic training set (data/shapes) ...")
        subprocess.run(_python_module("scripts.train", "dataset"), check=True, cwd=paths.ROOT)
    _say("building data/ref_data.csv (reference embeddings) ...")
    subprocess.run(_python_module("scripts.build_ref_data"), check=True, cwd=paths.ROOT)


def services(run_dir: Path = paths.RUN_DIR) -> dict[str, Service]:
    """The background services besides TorchServe, by name."""
    return {name: Service(name, run_dir) for name in ("gateway", "webapp", "evidently", "watcher")}


def _start(
    service: Service, argv: list[str], env: dict[str, str], url: str, timeout: float
) -> None:
    if service.is_running():
        _say(f"{service.name} already running (pid {service.pid()})")
        return
    service.start(argv, env=env, cwd=paths.ROOT)
    if url and not wait_http(url, timeout, alive=service):
        typer.echo(service.log_tail(40), err=True)
        typer.echo(f"{service.name} did not come up at {url}; log: {service.log_file}", err=True)
        raise typer.Exit(1)
    _say(f"{service.name} up (pid {service.pid()})")


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 300.0,
) -> None:
    """Start every service that is not running, wait until each answers, print the URLs."""
    ports = Ports()
    keys = load_keys()
    registry = Registry()
    version = ensure_model(registry)
    ensure_reference_data()

    ts = TorchServeProcess.attach(TS_RUN_DIR)
    if ts is not None and ts.is_running():
        _say(f"TorchServe already running (pid {ts.pid})")
    else:
        ts = TorchServeProcess(
            TS_RUN_DIR,
            ports.inference,
            ports.management,
            ports.metrics,
            paths.STORE_DIR,
            {MODEL_NAME: registry.get(version).mar},
        )
        _say(f"starting TorchServe with {MODEL_NAME} v{version} ...")
        ts.start()
        try:
            ts.wait_ready(timeout)
        except Exception as exc:
            typer.echo(ts.log_tail(60), err=True)
            ts.stop()
            typer.echo(f"TorchServe did not become ready: {exc}", err=True)
            raise typer.Exit(1) from exc
        _say(f"TorchServe up (pid {ts.pid})")

    gateway_url = f"http://127.0.0.1:{ports.gateway}"
    evidently_url = f"http://127.0.0.1:{ports.evidently}"
    base_env = {"YOLO_OFFLINE": "1", "DO_NOT_TRACK": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    gateway_env = {
        **base_env,
        **keys,
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_TORCHSERVE_INFERENCE_URL": ts.inference_url,
        "GATEWAY_TORCHSERVE_MANAGEMENT_URL": ts.management_url,
        "RETRAIN_INFERENCE_URL": ts.inference_url,
        "RETRAIN_MANAGEMENT_URL": ts.management_url,
    }
    svc = services()
    _start(svc["gateway"], _python_module("gateway"), gateway_env, f"{gateway_url}/ready", timeout)
    _start(
        svc["evidently"],
        _python_module("reporting", "ui"),
        {**base_env, "REPORTING_UI_PORT": str(ports.evidently)},
        f"{evidently_url}/api/projects",
        timeout,
    )
    _start(svc["watcher"], _python_module("reporting", "watch"), base_env, "", timeout)
    webapp_env = {
        **base_env,
        "WEBAPP_PORT": str(ports.webapp),
        "WEBAPP_GATEWAY_URL": gateway_url,
        # The web app offers "retrain now" too, which is an admin route.
        "WEBAPP_API_KEY": keys["GATEWAY_ADMIN_API_KEYS"].split(",")[0],
        "WEBAPP_EVIDENTLY_URL": evidently_url,
    }
    _start(
        svc["webapp"],
        _python_module("webapp"),
        webapp_env,
        f"http://127.0.0.1:{ports.webapp}/_stcore/health",
        timeout,
    )
    user_key = keys["GATEWAY_API_KEYS"].split(",")[0]
    typer.echo(
        "\n".join(
            [
                "",
                "yoloserve is up:",
                f"  gateway      {gateway_url}/docs   (API; model v{version})",
                f"  web app      http://127.0.0.1:{ports.webapp}",
                f"  Evidently UI {evidently_url}",
                f"  TorchServe   {ts.inference_url} / {ts.management_url} / {ts.metrics_url}"
                "  (internal)",
                "",
                f"  API keys (X-API-Key) in {DEMO_ENV.relative_to(paths.ROOT)}: user {user_key}",
                f"  try: curl -F file=@data/samples/shapes_1.jpg {gateway_url}/predict",
                f"  logs: {paths.RUN_DIR.relative_to(paths.ROOT)}/<service>/   stop: make stop",
            ]
        )
    )


@app.command()
def down() -> None:
    """Stop everything `up` started (web app, watcher, Evidently UI, gateway, then TorchServe)."""
    for name in ("webapp", "watcher", "evidently", "gateway"):
        if services()[name].stop():
            _say(f"{name} stopped")
    ts = TorchServeProcess.attach(TS_RUN_DIR)
    if ts is not None and ts.is_running():
        ts.stop()
        _say("TorchServe stopped")


@app.command()
def status() -> None:
    """One line per service: running or not, pid, log."""
    ts = TorchServeProcess.attach(TS_RUN_DIR)
    running = ts is not None and ts.is_running()
    pid = ts.pid if ts is not None else None
    typer.echo(f"{'torchserve':<11} {'running' if running else 'stopped':<8} pid {pid}")
    for name, service in services().items():
        state = "running" if service.is_running() else "stopped"
        typer.echo(f"{name:<11} {state:<8} pid {service.pid()}  log {service.log_file}")
    if not os.environ.get("CI"):
        typer.echo(f"keys: {DEMO_ENV}")


if __name__ == "__main__":
    app()
