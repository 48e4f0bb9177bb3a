"""scripts.containers without an engine: which engine, what a build mounts, what ps says.

The real builds and the running stack are tests/integration/test_containers.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from scripts import containers


def test_the_engine_is_chosen_by_env_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = _fake_bin(tmp_path, docker_info_rc=1, podman=True, docker=True)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CONTAINER_ENGINE", "docker")
    assert containers.engine() == "docker"
    monkeypatch.setenv("CONTAINER_ENGINE", "podman")
    assert containers.engine() == "podman"


def _fake_bin(tmp_path: Path, *, docker_info_rc: int | None, podman: bool,
              docker: bool = True) -> Path:
    """A PATH folder with the tools a machine may have: a ``docker`` client whose ``info``
    exits ``docker_info_rc`` (an engine answers when 0), and ``podman`` if asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tools = {}
    if docker:
        tools["docker"] = f"#!/bin/sh\n[ \"$1\" = info ] && exit {docker_info_rc}\nexit 0\n"
    if podman:
        tools["podman"] = "#!/bin/sh\nexit 0\n"
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


# Debian's docker.io client with no daemon is the case a fresh CI machine has.
ENGINE_CASES = [
    # (docker client, docker info rc, podman installed) -> engine, packages make setup installs
    pytest.param(True, 1, False, "podman", ["podman", "runc", "debootstrap"],
                 id="client-no-engine"),
    pytest.param(True, 1, True, "podman", ["runc", "debootstrap"],
                 id="client-no-engine-podman"),
    pytest.param(False, None, False, "podman", ["podman", "runc", "debootstrap"], id="nothing"),
    pytest.param(True, 0, False, "docker", [], id="docker-engine"),
]


@pytest.mark.parametrize(("docker", "info_rc", "podman", "engine", "packages"), ENGINE_CASES)
def test_make_and_containers_agree_on_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker: bool, info_rc: int | None,
    podman: bool, engine: str, packages: list[str],
) -> None:
    """``make container-engine`` (what ``make setup`` decides with) and ``engine()`` (what make up
    and the container test use) give one answer, from the same rule: an engine that answers."""
    bin_dir = _fake_bin(tmp_path, docker_info_rc=info_rc, podman=podman, docker=docker)
    # Only the fakes and what make and the shell need: no real docker, podman, runc, debootstrap.
    system = tmp_path / "system"
    system.mkdir()
    for tool in ("make", "sh", "bash", "env"):
        real = shutil.which(tool)
        assert real, tool
        (system / tool).symlink_to(real)
    # The interpreter itself, not a version manager's shim script (which needs more of PATH).
    real_python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    (system / "python3").symlink_to(real_python)
    path = f"{bin_dir}:{system}"
    monkeypatch.delenv("CONTAINER_ENGINE", raising=False)
    env = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_ENGINE", "MAKEFLAGS")}
    made = subprocess.run(["make", "-s", "--no-print-directory", "container-engine"],
                          cwd=containers.paths.ROOT, env={**env, "PATH": path},
                          capture_output=True, text=True, check=True)
    assert made.stdout.split() == [f"engine={engine}", *[f"missing={p}" for p in packages]]
    monkeypatch.setenv("PATH", path)
    if engine == "podman" and not podman:
        with pytest.raises(typer.BadParameter, match="make setup"):
            containers.engine()
    else:
        assert containers.engine() == engine


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
