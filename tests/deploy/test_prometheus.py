"""deploy/prometheus: the compose config and the alert rules pass ``promtool check``, and the
rules' unit tests (deploy/prometheus/tests) pass ``promtool test rules``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from yoloserve import paths

PROMETHEUS_DIR = paths.ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning"}


def _promtool(*args: str) -> str:
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(exe).is_file():
        pytest.fail("promtool not found: apt-get install prometheus (it ships promtool)")
    result = subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_compose_config_is_valid_and_finds_the_rules() -> None:
    output = _promtool("check", "config", "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in output


def test_compose_config_scrapes_the_gateway_and_torchserve() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    # Compose service names and ports: gateway's API, TorchServe's metrics_address.
    assert targets == {"gateway": ["gateway:8080"], "torchserve": ["serving:8087"]}


def test_rules_are_valid() -> None:
    assert RULE_FILES
    output = _promtool("check", "rules", *[str(p) for p in RULE_FILES])
    assert "SUCCESS" in output


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES
    output = _promtool("test", "rules", *[str(p) for p in TEST_FILES])
    assert "SUCCESS" in output and "FAILED" not in output


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    alerts = _alerts()
    assert {a["alert"] for a in alerts} >= {
        "ModelServerDown", "GatewayHigh5xxRate", "GatewayHighLatencyP95", "DriftFlagged",
        "RetrainJobsFailing", "RetrainCandidatesRejected",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), alert["alert"]
        assert len(annotations["description"]) > 80, alert["alert"]  # the what-to-do part
        if alert["labels"]["severity"] == "critical":  # no page on a single bad scrape
            assert alert.get("for"), alert["alert"]


def test_every_alert_has_a_firing_unit_test() -> None:
    tested = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert {a["alert"] for a in _alerts()} == tested


def test_rules_select_the_job_names_the_configs_define() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    used = {m for a in _alerts() for m in re.findall(r'job="([^"]+)"', a["expr"])}
    assert used <= jobs
