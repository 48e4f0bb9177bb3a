"""``devstack.prometheus``: the local config it renders passes ``promtool check config`` with the
deploy rules, and the program runs Debian's binary on loopback with a readiness check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.ports import free_port
from devstack.prometheus import (
    PROMETHEUS_BIN,
    RULES_DIR,
    prometheus_program,
    render_config,
    write_config,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_config_scrapes_both_targets_with_the_deploy_job_names() -> None:
    config = render_config(
        "http://127.0.0.1:18080", "http://127.0.0.1:18087", scrape_interval_s=1.5
    )

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["gateway"]["static_configs"] == [{"targets": ["127.0.0.1:18080"]}]
    assert jobs["torchserve"]["static_configs"] == [{"targets": ["127.0.0.1:18087"]}]
    assert "metrics_path" not in jobs["gateway"]  # Prometheus' default, /metrics
    assert config["global"]["scrape_interval"] == "1500ms"
    assert config["rule_files"] == [str(RULES_DIR.resolve() / "*.yml")]
    compose = yaml.safe_load((RULES_DIR.parent / "prometheus.yml").read_text())
    assert {j["job_name"] for j in compose["scrape_configs"]} == set(jobs)


def test_a_url_path_becomes_the_metrics_path() -> None:
    config = render_config("http://127.0.0.1:1/gw/metrics", "http://127.0.0.1:2")
    assert config["scrape_configs"][0]["metrics_path"] == "/gw/metrics"


def test_a_url_without_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host and port"):
        render_config("http://gateway", "http://127.0.0.1:2")


def test_written_config_passes_promtool_with_the_rules(tmp_path: Path) -> None:
    path = write_config(tmp_path, render_config("http://127.0.0.1:1", "http://127.0.0.1:2"))

    result = subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_program_listens_on_loopback_and_keeps_its_data_in_the_run_dir(tmp_path: Path) -> None:
    port = free_port()
    program = prometheus_program(tmp_path, port, "http://127.0.0.1:1", "http://127.0.0.1:2")

    assert program.command[0] == str(PROMETHEUS_BIN)
    assert f"--config.file={tmp_path / 'prometheus.yml'}" in program.command
    assert f"--storage.tsdb.path={tmp_path / 'data'}" in program.command
    assert f"--web.listen-address=127.0.0.1:{port}" in program.command
    assert program.ready is not None and not program.ready()  # nothing listens yet


def test_a_missing_binary_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prometheus"):
        prometheus_program(tmp_path, 1, "http://a:1", "http://b:2", binary=tmp_path / "nope")
