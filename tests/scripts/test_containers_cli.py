"""scripts.containers without an engine: which engine, what a build mounts, what ps says.

The real builds and the running stack are tests/integration/test_containers.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from scripts import containers


def test_the_engine_is_chosen_by_env_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINER_ENGINE", "docker")
    assert containers.engine() == "docker"
    monkeypatch.setenv("CONTAINER_ENGINE", "podman")
    assert containers.engine() == "podman"


def test_podman_gets_the_project_containers_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    assert containers.engine_env("podman")["CONTAINERS_CONF"] == str(containers.PODMAN_CONF)
    assert "CONTAINERS_CONF" not in containers.engine_env("docker")
    monkeypatch.setenv("CONTAINERS_CONF", "/etc/mine.conf")
    assert containers.engine_env("podman")["CONTAINERS_CONF"] == "/etc/mine.conf"
    text = containers.PODMAN_CONF.read_text()
    assert "default_ulimits = []" in text and 'runtime = "runc"' in text


def test_builds_mount_pip_config_and_the_folders_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "pypi"
    (index / "simple").mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nextra-index-url = file://{index}/simple\n"
                    f"find-links = {wheels}\nconstraint = {tmp_path}/missing.txt\n")
    monkeypatch.setattr(containers, "PIP_CONFIGS", (str(conf),))
    monkeypatch.setattr(containers, "TRUST_STORES", ())
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    # A local index is mounted whole (its pages link to ../files); a missing file is not.
    assert containers._pip_paths() == sorted([str(conf), str(index), str(wheels)])
    args = containers.build_args("podman")
    assert args[:2] == ["--network=host", "--format=docker"]
    assert f"{index}:{index}:ro" in args
    assert containers.build_args("docker") == []


def test_containers_reads_podman_ps_json(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"Names": ["p_gateway_1"], "State": "running",
             "Labels": {"com.docker.compose.service": "gateway"}},
            {"Names": ["p_bootstrap_1"], "State": "exited",
             "Labels": {"com.docker.compose.service": "bootstrap"}}]

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 0, json.dumps(rows), "")

    monkeypatch.setattr(containers, "run", fake_run)
    assert containers.containers("podman") == [
        {"name": "p_gateway_1", "service": "gateway", "state": "running"},
        {"name": "p_bootstrap_1", "service": "bootstrap", "state": "exited"},
    ]


def test_image_names_follow_prefix_and_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_TAG", "0.2.0")
    monkeypatch.setenv("IMAGE_PREFIX", "registry.example/yolo")
    assert containers.image_name("gateway") == "registry.example/yolo/gateway:0.2.0"


def test_grafana_password_is_made_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAFANA_ADMIN_PASSWORD", raising=False)
    env_file = tmp_path / "demo.env"
    env_file.write_text("GATEWAY_API_KEYS=u\nGATEWAY_ADMIN_API_KEYS=a\n")
    first = containers.stored_secret("GRAFANA_ADMIN_PASSWORD", env_file)
    assert len(first) >= 20 and first != "admin"
    assert containers.stored_secret("GRAFANA_ADMIN_PASSWORD", env_file) == first
    assert env_file.read_text().startswith("GATEWAY_API_KEYS=u\nGATEWAY_ADMIN_API_KEYS=a\n")
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("GRAFANA_ADMIN_PASSWORD", "from-env")
    assert containers.stored_secret("GRAFANA_ADMIN_PASSWORD", env_file) == "from-env"
