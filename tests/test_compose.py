"""docker-compose.yml and deploy/images/Dockerfile, read as a compose parser and a builder read
them. The stack really runs in tests/integration/test_containers.py; these catch a broken
wiring in a second."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "images" / "Dockerfile"
IMAGES = ("serving", "trainer", "gateway", "webapp", "reporting")


@pytest.fixture(scope="module")
def resolved() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is missing: `make setup` installs it"
    out = subprocess.run(
        [exe, "-f", str(COMPOSE), "--profile", "monitoring", "config"], capture_output=True,
        text=True, cwd=ROOT, check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(yaml.safe_load(out.stdout))


def stages() -> dict[str, str]:
    """Dockerfile stage name -> its instructions."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def port_target(port: str | dict) -> int:
    """The container side of a ports entry, short ("0.0.0.0:8080:8080") or long syntax."""
    return int(port["target"] if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0])


def named_volume_targets(service: dict) -> set[str]:
    """Mount points of named volumes (not bind mounts), short or long syntax."""
    out = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                out.add(volume["target"])
        elif not volume.startswith((".", "/")):
            out.add(volume.split(":")[1])
    return out


def test_every_image_is_a_stage_of_one_dockerfile(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        build = service.get("build")
        if build is None:
            continue  # official images (prometheus, grafana)
        assert Path(build["dockerfile"]).name == "Dockerfile", name
        assert build["target"] in IMAGES, name
        assert service["image"].endswith(f"/{build['target']}:local")
    assert set(IMAGES) <= set(stages())


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_runs_unprivileged_with_a_healthcheck(image: str) -> None:
    body = stages()[image]
    assert re.search(r"^USER app$", body, flags=re.MULTILINE), image
    assert "HEALTHCHECK" in body, image


def test_one_base_for_every_image() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)[0] == "${BASE_IMAGE}"
    # Only the two model images carry torch.
    for image in ("gateway", "webapp", "reporting"):
        assert "torch" not in stages()[image]
    assert "pytorch/torchserve" not in text


def test_torchserve_is_internal_only(resolved: dict) -> None:
    serving = resolved["services"]["serving"]
    assert "ports" not in serving, "TorchServe must not be published to users"
    assert list(serving["networks"]) == ["backend"]
    assert resolved["networks"]["backend"]["internal"] is True
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            assert port_target(port) not in (8085, 8086, 8087), name


def test_the_controller_is_apart_from_the_gateway(resolved: dict) -> None:
    services = resolved["services"]
    gateway, controller = services["gateway"], services["controller"]
    assert "trainer" not in services  # the controller replaced it
    assert controller["command"] == ["python", "-m", "yoloserve.controller", "run"]
    assert controller["build"]["target"] == "trainer" and gateway["build"]["target"] == "gateway"
    assert "ports" not in controller and list(controller["networks"]) == ["backend"]
    variables = controller["environment"]
    assert variables["CONTROLLER_LEASE_BACKEND"] == "store"
    assert variables["CONTROLLER_LEASE_NAME"] == "yoloserve-controller"
    assert int(variables["CONTROLLER_LEASE_DURATION_S"]) * 2 <= 30
    assert variables["RETRAIN_LAUNCHER"] == "queue"
    # The gateway queues intents; carrying them out (TorchServe's management API for a swap,
    # the lease) is the controller's.
    assert gateway["environment"]["RETRAIN_LAUNCHER"] == "queue"
    control = [n for n in gateway["environment"] if n.startswith(("CONTROLLER_", "DEPLOY_"))]
    assert not control, control
    # One TorchServe, named by the same TORCHSERVE_* in both (the gateway: predictions and
    # readiness; the controller: hot swaps).
    for name in ("TORCHSERVE_INFERENCE_URL", "TORCHSERVE_MANAGEMENT_URL"):
        assert gateway["environment"][name] == variables[name], name


def test_operator_verbs_exec_into_a_service_compose_runs(resolved: dict) -> None:
    # scripts/containers.py runs redeploy/rollback inside the controller's container.
    source = (ROOT / "scripts" / "containers.py").read_text()
    execs = set(re.findall(r'"exec", "-T", "([\w-]+)"', source))
    assert execs and execs <= set(resolved["services"])


def test_published_ports_are_overridable_and_match_the_contract(resolved: dict) -> None:
    published = {name: [port_target(p) for p in svc.get("ports", [])]
                 for name, svc in resolved["services"].items()}
    assert published["gateway"] == [8080]
    assert published["webapp"] == [8081]
    assert published["reporting"] == [8082]
    raw = COMPOSE.read_text()
    for variable in ("GATEWAY_PORT", "WEBAPP_PORT", "EVIDENTLY_PORT"):
        assert "${" + variable + ":-" in raw


def test_state_lives_in_named_volumes(resolved: dict) -> None:
    def targets(name: str) -> set[str]:
        return named_volume_targets(resolved["services"][name])

    for service in ("serving", "controller", "gateway", "bootstrap"):
        assert "/models" in targets(service), service
    for service in ("controller", "gateway", "reporting", "reporting-worker", "bootstrap"):
        assert "/data" in targets(service), service
    assert {"models", "data"} <= set(resolved["volumes"])


def test_monitoring_scrapes_what_compose_runs(resolved: dict) -> None:
    services = resolved["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["image"].startswith("prom/prometheus:v") and "build" not in prometheus
    assert grafana["image"].startswith("grafana/grafana:") and "build" not in grafana
    # Prometheus must reach TorchServe's metrics API, which lives on the internal network only.
    assert "backend" in prometheus["networks"] and "backend" not in grafana["networks"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}
    assert targets == {"gateway:8080", "serving:8087"}
    mounts = " ".join(str(v) for v in prometheus["volumes"] + grafana["volumes"])
    assert "deploy/prometheus" in mounts and "deploy/grafana/provisioning" in mounts


def test_tracking_profile_is_mlflow_on_postgres_and_minio() -> None:
    exe = shutil.which("docker-compose")
    assert exe
    env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_UI_URL": "http://h:8083",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([exe, "-f", str(COMPOSE), "--profile", "tracking", "config"],
                         capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    mlflow = services["mlflow"]
    assert re.fullmatch(r"ghcr\.io/mlflow/mlflow:v\d+\.\d+\.\d+-full", mlflow["image"])
    args = " ".join(mlflow["command"])
    assert "postgresql://" in args and "@mlflow-db:5432/" in args
    assert "--artifacts-destination=s3://mlflow" in args
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://mlflow-artifacts:9000"
    assert [port_target(p) for p in mlflow["ports"]] == [5000]
    for name in ("mlflow-db", "mlflow-artifacts"):
        assert ":" in services[name]["image"] and "latest" not in services[name]["image"]
        assert list(services[name]["networks"]) == ["backend"] and "ports" not in services[name]
    assert services["controller"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["gateway"]["environment"]["GATEWAY_MLFLOW_UI_URL"] == "http://h:8083"


def test_without_tracking_nothing_points_at_mlflow(resolved: dict) -> None:
    services = resolved["services"]
    assert services["mlflow"]["profiles"] == ["tracking"]  # compose v1's config lists them all
    assert not services["controller"]["environment"].get("MLFLOW_TRACKING_URI")


STORE_CLIENTS = ("gateway", "controller", "reporting-worker", "bootstrap", "serving")


def test_postgres_profile_is_the_shared_store() -> None:
    exe = shutil.which("docker-compose")
    assert exe
    url = "postgresql+psycopg://yoloserve:s3cret@postgres:5432/yoloserve"
    env = {"STORE_DATABASE_URL": url, "POSTGRES_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([exe, "-f", str(COMPOSE), "--profile", "postgres", "config"],
                         capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    services = resolved["services"]
    postgres = services["postgres"]
    # The image compose already pins for mlflow-db, its own volume, internal only.
    assert postgres["image"] == services["mlflow-db"]["image"] == "postgres:17.6"
    assert postgres["profiles"] == ["postgres"]
    assert "/var/lib/postgresql/data" in named_volume_targets(postgres)
    assert "postgres" in resolved["volumes"]
    assert list(postgres["networks"]) == ["backend"] and "ports" not in postgres
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    variables = postgres["environment"]
    assert variables["POSTGRES_PASSWORD"] == "s3cret"
    assert (variables["POSTGRES_USER"], variables["POSTGRES_DB"]) == ("yoloserve", "yoloserve")
    # Its clients read the URL and can reach it; nothing else gets it.
    for name, service in services.items():
        assert (service.get("environment") or {}).get("STORE_DATABASE_URL", "") == (
            url if name in STORE_CLIENTS else ""
        ), name
    for name in STORE_CLIENTS:
        assert "backend" in services[name]["networks"], name


def test_without_the_postgres_profile_the_store_is_sqlite(resolved: dict) -> None:
    services = resolved["services"]
    assert services["postgres"]["profiles"] == ["postgres"]  # compose v1's config lists them all
    for name in STORE_CLIENTS:
        # Unset or empty: the embedded SQLite default on the data volume.
        assert services[name]["environment"]["STORE_DATABASE_URL"] == "", name
        assert "/data" in named_volume_targets(services[name]), name
