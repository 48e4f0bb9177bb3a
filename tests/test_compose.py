"""docker-compose.yml is checked with a real compose parser (no Docker engine runs here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def resolved() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is missing: `make setup` installs it"
    out = subprocess.run(
        [exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_four_services_and_worker(resolved: dict) -> None:
    assert {"serving", "gateway", "webapp", "reporting"} <= set(resolved["services"])


def test_torchserve_is_internal_only(resolved: dict) -> None:
    serving = resolved["services"]["serving"]
    assert "ports" not in serving, "TorchServe must not be published to users"
    assert serving["networks"] == {"backend": None} or list(serving["networks"]) == ["backend"]
    assert resolved["networks"]["backend"]["internal"] is True


@pytest.mark.parametrize("service", ["serving", "gateway", "webapp", "reporting"])
def test_every_user_facing_service_has_a_healthcheck(resolved: dict, service: str) -> None:
    assert resolved["services"][service]["healthcheck"]["test"]


@pytest.mark.parametrize(
    ("service", "needs"), [("gateway", "serving"), ("webapp", "gateway")]
)
def test_startup_waits_for_health(resolved: dict, service: str, needs: str) -> None:
    dep = resolved["services"][service]["depends_on"][needs]
    assert dep["condition"] == "service_healthy"


def test_published_ports_match_the_contract(resolved: dict) -> None:
    published = {
        name: [p["target"] if isinstance(p, dict) else int(str(p).split(":")[-1])
               for p in svc.get("ports", [])]
        for name, svc in resolved["services"].items()
    }
    assert published["gateway"] == [8080]
    assert published["webapp"] == [8081]
    assert published["reporting"] == [8082]


def test_models_volume_is_shared_by_serving_and_gateway(resolved: dict) -> None:
    def targets(name: str) -> set[str]:
        vols = resolved["services"][name].get("volumes", [])
        return {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in vols}

    assert "/models" in targets("serving") and "/models" in targets("gateway")
    assert json.dumps(resolved)  # the resolved config is plain data
