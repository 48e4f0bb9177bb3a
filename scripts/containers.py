"""The production path on one host: build the images, run the compose stack, operate it.

Docker (``docker compose``) when its engine answers, else podman with podman-compose;
``CONTAINER_ENGINE=docker|podman`` decides. Every command runs the same compose file
(docker-compose.yml, project ``yoloserve``), so make up / make down / the container test agree.

    python -m scripts.containers images [--base IMAGE]   # make images
    python -m scripts.containers up                      # make up (GATEWAY_PORT=... etc.)
    python -m scripts.containers wait                    # until every healthcheck passes
    python -m scripts.containers redeploy --weights W    # make redeploy STACK=compose
    python -m scripts.containers rollback 1              # make rollback STACK=compose
    python -m scripts.containers down                    # make down
    python -m scripts.containers local-base              # a Debian base built here, no hub

Builds mount the host's pip configuration, the local package folders it names and the trust
store into each RUN step (podman ``-v``; they never land in a layer), so an image installs from
the same indexes and proxy as this machine's venv.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from scripts import container_engine
from scripts.demo_env import DEMO_ENV, read_env_file
from yoloserve import paths
from yoloserve.modelserver.export import AUTO_RUNTIME

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

PROJECT = os.environ.get("COMPOSE_PROJECT", "yoloserve")  # the container test runs its own
COMPOSE_FILE = paths.ROOT / "docker-compose.yml"
DOCKERFILE = paths.ROOT / "deploy" / "images" / "Dockerfile"
PODMAN_CONF = paths.ROOT / "deploy" / "podman" / "containers.conf"
# Built in this order: serving and trainer share the torch layer, the rest are light.
IMAGES = ("serving", "trainer", "gateway", "webapp", "reporting")
LOCAL_BASE = "localhost/yoloserve-base:bookworm"
DEFAULT_BASE = "python:3.11-slim"
# What the host's pip reads; each is mounted at the same path when it exists.
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip", str(Path.home() / ".config" / "pip"),
               str(Path.home() / ".pip"))
TRUST_STORES = ("/etc/ssl/certs/ca-certificates.crt",)


def _say(message: str) -> None:
    typer.echo(f"[containers] {message}", err=True)


def image_tag() -> str:
    return os.environ.get("IMAGE_TAG", "local")


def image_prefix() -> str:
    return os.environ.get("IMAGE_PREFIX", "yoloserve")


def image_name(target: str, tag: str | None = None) -> str:
    return f"{image_prefix()}/{target}:{tag or image_tag()}"


def engine() -> str:
    """The engine: ``scripts.container_engine.choose`` (the Makefile asks the same function).

    Raises:
        typer.BadParameter: the chosen engine is not installed (``make setup`` installs podman).
    """
    name = container_engine.choose()
    if shutil.which(name) is None:
        raise typer.BadParameter(
            f"no Docker engine answers here and {name} is not installed: `make setup` installs "
            "podman, runc and debootstrap (or set CONTAINER_ENGINE)")
    return name


def engine_env(name: str) -> dict[str, str]:
    """The environment the engine runs with.

    podman here needs two settings (no default ulimits: this kind of sandbox refuses to raise
    RLIMIT_NOFILE; runc: crun refuses a hybrid cgroup layout) and file-based logs and events (no
    journald); deploy/podman/containers.conf has them, unless CONTAINERS_CONF names another file.
    """
    env = dict(os.environ)
    if name == "podman" and "CONTAINERS_CONF" not in env:
        env["CONTAINERS_CONF"] = str(PODMAN_CONF)
    return env


def run(cmd: Sequence[str], *, check: bool = True, capture: bool = False,
        env: dict[str, str] | None = None, input_file: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    name = cmd[0] if cmd[0] in ("docker", "podman") else engine()
    stdin = input_file.open("rb") if input_file else None
    try:
        return subprocess.run(
            list(cmd), check=check, cwd=paths.ROOT, env=env or engine_env(name),
            stdin=stdin, capture_output=capture, text=stdin is None,
        )
    finally:
        if stdin:
            stdin.close()


def compose_command(name: str) -> list[str]:
    if name == "docker":
        return ["docker", "compose", "-p", PROJECT, "-f", str(COMPOSE_FILE)]
    exe = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    if not Path(exe).exists():
        raise typer.BadParameter("podman-compose is missing: `make setup` installs it")
    return [exe, "-p", PROJECT, "-f", str(COMPOSE_FILE)]


def _pip_paths() -> list[str]:
    """Host paths pip reads: its config files and the local folders/files they name."""
    found = [p for p in (*PIP_CONFIGS, *TRUST_STORES) if Path(p).exists()]
    texts = []
    for config in found:
        path = Path(config)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        texts += [f.read_text(errors="replace") for f in files if f.is_file() and f.suffix
                  in (".conf", ".ini", ".txt", "")]
    texts += [v for k, v in os.environ.items() if k.startswith("PIP_")]
    for text in texts:
        for ref in re.findall(r"(?:file://)?(/[\w./+-]+)", text):
            target = Path(ref)
            if target.name == "simple":  # a local index links to ../files: mount its root
                target = target.parent
            if target.exists() and not str(target).startswith(("/etc/ssl", "/proc", "/dev")):
                found.append(str(target))
    unique = sorted(set(found))
    # A path inside another mounted folder comes with it.
    return [p for p in unique if not any(p.startswith(q + "/") for q in unique)]


def build_args(name: str) -> list[str]:
    """Engine flags that let RUN steps reach the host's indexes through its trust store."""
    if name != "podman":
        # BuildKit has no bind mounts from the host: a Docker host is expected to reach PyPI.
        return []
    args = ["--network=host", "--format=docker"]  # docker format keeps HEALTHCHECK
    for path in _pip_paths():
        args += ["-v", f"{path}:{path}:ro"]
    return args


def image_size_mb(name: str, image: str) -> float:
    out = run([name, "image", "inspect", image, "--format", "{{.Size}}"], capture=True)
    return int(out.stdout.strip()) / 1e6


@app.command()
def local_base(
    tag: Annotated[str, typer.Option(help="Name of the base image to create.")] = LOCAL_BASE,
    mirror: Annotated[str, typer.Option(help="Debian mirror.")] = "http://deb.debian.org/debian",
) -> None:
    """A Debian bookworm + Python 3.11 base made with debootstrap (for hosts that pull nothing)."""
    name = engine()
    if _image_exists(name, tag):
        _say(f"{tag} is there")
        return
    if not shutil.which("debootstrap"):
        raise typer.BadParameter("debootstrap is missing: `make system-deps` installs it")
    with tempfile.TemporaryDirectory(prefix="yoloserve-base-") as tmp:
        root = Path(tmp) / "rootfs"
        _say(f"debootstrap bookworm into {root} (about a minute) ...")
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=python3,python3-venv,ca-certificates,passwd",
                        "bookworm", str(root), mirror], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([name, "import", "-", tag], stdin=tar.stdout, check=True,
                       env=engine_env(name), capture_output=True)
        tar.wait()
    _say(f"{tag} created")


def _image_exists(name: str, image: str) -> bool:
    return run([name, "image", "inspect", image], check=False, capture=True).returncode == 0


def usable_base(name: str, base: str) -> str:
    """``base``, pulled if missing; the local Debian base when the default cannot be pulled."""
    if _image_exists(name, base):
        return base
    if run([name, "pull", base], check=False, capture=True).returncode == 0:
        return base
    if base != DEFAULT_BASE:
        raise typer.BadParameter(f"base image {base} is neither here nor pullable")
    _say(f"{base} cannot be pulled here: building on {LOCAL_BASE} (debootstrap) instead")
    local_base(tag=LOCAL_BASE)
    return LOCAL_BASE


@app.command()
def images(
    base: Annotated[str, typer.Option(envvar="BASE_IMAGE", help="Base of every image.")
                    ] = DEFAULT_BASE,
    only: Annotated[list[str] | None, typer.Option(help="Build just these targets.")] = None,
) -> None:
    """Build every image (deploy/images/Dockerfile, one target each) and print their sizes.

    The default base is pulled when missing; where nothing can be pulled (no registry reachable),
    the build falls back to the local Debian base (`local-base`), saying so.
    """
    name = engine()
    base = usable_base(name, base)
    targets = only or list(IMAGES)
    sizes = {}
    for target in targets:
        image = image_name(target)
        started = time.monotonic()
        _say(f"building {image} on {base} ...")
        run([name, "build", "-f", str(DOCKERFILE), "--target", target,
             "--build-arg", f"BASE_IMAGE={base}", *build_args(name), "-t", image, "."])
        sizes[image] = image_size_mb(name, image)
        _say(f"{image}: {sizes[image]:.0f} MB in {time.monotonic() - started:.0f} s")
    typer.echo(json.dumps({k: round(v) for k, v in sizes.items()}, indent=2))


def stored_secret(name: str, path: Path | None = None) -> str:
    """``name`` from the environment, else from .run/demo.env, else a new random one stored there.

    Grafana's admin password this way is never the image's admin/admin on a published port.
    """
    if os.environ.get(name):
        return os.environ[name]
    path = path or DEMO_ENV
    if stored := read_env_file(path).get(name):
        return stored
    lines = path.read_text().splitlines() if path.is_file() else []
    value = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in [*lines, f"{name}={value}"]))
    path.chmod(0o600)
    return value


def compose_env(name: str) -> dict[str, str]:
    """The engine's environment plus the API keys and Grafana's admin password (created once,
    in .run/demo.env, as `make demo` does)."""
    from scripts.stack import load_keys  # the demo's keys: one place creates them

    keys = {**load_keys(), **{k: v for k, v in os.environ.items() if k.endswith("_API_KEYS")}}
    # The web app offers "retrain now" too, an admin route (as in `make demo`).
    webapp_key = keys["GATEWAY_ADMIN_API_KEYS"].split(",")[0]
    return {**engine_env(name), "IMAGE_PREFIX": image_prefix(), "IMAGE_TAG": image_tag(),
            "WEBAPP_API_KEY": webapp_key,
            "GRAFANA_ADMIN_PASSWORD": stored_secret("GRAFANA_ADMIN_PASSWORD"), **keys}


@app.command()
def up(
    monitoring: Annotated[bool, typer.Option(
        envvar="MONITORING", help="Also start Prometheus and Grafana (official images).")] = False,
    tracking: Annotated[bool, typer.Option(
        envvar="TRACKING", help="Also start MLflow with PostgreSQL and MinIO (official images)."
    )] = False,
) -> None:
    """Start the stack in the background (images built first when missing)."""
    name = engine()
    missing = [t for t in IMAGES if not _image_exists(name, image_name(t))]
    if missing:
        images(base=os.environ.get("BASE_IMAGE", DEFAULT_BASE), only=missing)
    profile = ["--profile", "monitoring"] if monitoring else []
    env = compose_env(name)
    if tracking:
        profile += ["--profile", "tracking"]
        env.setdefault("MLFLOW_TRACKING_URI", "http://mlflow:5000")
        env.setdefault("MLFLOW_UI_URL", f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '8083')}")
    run([*compose_command(name), *profile, "up", "-d"], env=env)
    wait()
    port = os.environ.get("GATEWAY_PORT", "8080")
    typer.echo(f"gateway http://127.0.0.1:{port}  web app http://127.0.0.1:"
               f"{os.environ.get('WEBAPP_PORT', '8081')}  Evidently http://127.0.0.1:"
               f"{os.environ.get('EVIDENTLY_PORT', '8082')}   keys: .run/demo.env")


def containers(name: str) -> list[dict[str, str]]:
    """The project's containers: name, service, state."""
    out = run([name, "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
               "--format", "json"], capture=True)
    text = out.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    found = []
    for row in rows:
        labels = row.get("Labels") or {}
        if isinstance(labels, str):
            labels = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
        names = row.get("Names")
        found.append({
            "name": names[0] if isinstance(names, list) else str(names),
            "service": labels.get("com.docker.compose.service", ""),
            "state": str(row.get("State", "")).lower(),
        })
    return found


def health(name: str, container: str) -> str:
    """``healthy``, ``unhealthy``, ``starting`` or ``none`` (no healthcheck)."""
    if name == "podman":
        # Without systemd, podman schedules no healthcheck: run it now (this records the result).
        probe = run(["podman", "healthcheck", "run", container], check=False, capture=True)
        said = (probe.stdout + probe.stderr).lower()
        if "no healthcheck" in said or "no defined healthcheck" in said:
            return "none"
        return "healthy" if probe.returncode == 0 else "starting"
    out = run(["docker", "inspect", container, "--format",
               "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"], capture=True)
    return out.stdout.strip()


@app.command()
def wait(
    timeout: Annotated[float, typer.Option(help="Seconds to wait in all.")] = 900.0,
) -> None:
    """Wait until every running service's healthcheck passes (exit 1 on timeout)."""
    name = engine()
    deadline = time.monotonic() + timeout
    reported: set[str] = set()
    while True:
        pending = []
        for box in containers(name):
            if box["state"] != "running":
                continue  # one-shot services (bootstrap) end; restart policies handle crashes
            status = health(name, box["name"])
            if status in ("healthy", "none"):
                if box["service"] not in reported:
                    reported.add(box["service"])
                    _say(f"{box['service']} {status}")
            else:
                pending.append(box["service"])
        if not pending and reported:
            return
        if time.monotonic() > deadline:
            _say(f"not healthy after {timeout:.0f} s: {', '.join(sorted(pending))}")
            raise typer.Exit(1)
        time.sleep(3)


def _exec_controller(name: str, args: Sequence[str], stdin: Path | None = None) -> None:
    # -T: no TTY, so a file can be piped in (both compose tools take it).
    run([*compose_command(name), "exec", "-T", "controller", *args], env=compose_env(name),
        input_file=stdin)


@app.command()
def redeploy(
    weights: Annotated[Path, typer.Option(help="A .pt to package and serve.")],
    runtime: Annotated[str, typer.Option(
        help="auto, onnx, openvino, torchscript, onnx-int8 or openvino-int8.")] = AUTO_RUNTIME,
    replace_classes: Annotated[bool, typer.Option(
        help="WEIGHTS detect other classes than the served model: serve them instead.")] = False,
) -> None:
    """Package WEIGHTS inside the controller container and hot-swap it in (no restart)."""
    name = engine()
    upload = "/tmp/redeploy-weights.pt"
    _exec_controller(name, ["sh", "-c", f"cat > {upload}"], stdin=weights)
    _exec_controller(name, ["python", "-m", "scripts.models", "redeploy", "--weights", upload,
                            "--runtime", runtime,
                            *(["--replace-classes"] if replace_classes else [])])


@app.command()
def rollback(version: str) -> None:
    """Make VERSION the serving default again, inside the controller container."""
    _exec_controller(engine(), ["python", "-m", "scripts.models", "activate", version])


@app.command()
def down(
    volumes: Annotated[bool, typer.Option(help="Also delete the models and data volumes.")
                       ] = False,
) -> None:
    """Stop and remove the stack's containers (volumes are kept unless --volumes)."""
    name = engine()
    run([*compose_command(name), "--profile", "monitoring", "--profile", "tracking", "down",
         *(["-v"] if volumes else [])], env=compose_env(name))


if __name__ == "__main__":
    app()
